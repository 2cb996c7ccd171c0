"""The identity graph: which profile every id resolves to. Pure functions, no I/O.

Two kinds of edges come out of events:

* **claim** ``(A, U)``: an event carried anonymousId A and userId U (rule 3). A joins U's
  profile unless A already belongs to another identified profile (a shared device): then
  the claim is refused and recorded as a conflict.
* **alias** ``(P, U)``: ``alias(previousId=P, userId=U)`` merges P's whole profile into U's,
  irreversibly (rule 4). Chains resolve transitively; cycles and repeats are no-ops.

The outcome must not depend on the order in which edges *arrive* (partitions interleave
differently from run to run, and a restarted worker replays), so edges are applied in
**event-time order** — ``(timestamp, messageId)`` — to a union-find, from scratch, for the
connected component that a new edge touches. Arrival order then cannot change the result:
one worker, two workers, or a worker killed and restarted all compute the same mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLAIM = "claim"
ALIAS = "alias"
FORGET = "forget"  # a deleted person's id leaves the graph (privacy.executor)

# (timestamp µs, messageId, kind, a, b): claim a=anonymousId b=userId; alias a=previousId b=userId.
Edge = tuple[int, str, str, str, str]


def edge_key(edge: Edge) -> str:
    """Edges with the same kind and endpoints are one fact; only the earliest occurrence counts.

    A repeated claim or alias can never change the outcome (profiles only ever merge), so a
    node keeps one edge per neighbour and kind, which bounds its size.
    """
    return f"{edge[2]}\x1f{edge[3]}\x1f{edge[4]}"


@dataclass
class Node:
    """What the graph table stores per id.

    ``edges`` maps :func:`edge_key` to the earliest occurrence of that edge; ``profile`` is the
    id's current resolution; ``conflicts`` the userIds refused as owners of this id; ``version``
    the graph offset that last changed it (the published mapping's version).
    """

    edges: dict[str, Edge] = field(default_factory=dict)
    profile: str | None = None
    conflicts: tuple[str, ...] = ()
    version: int = -1

    def add(self, edge: Edge) -> bool:
        """Record ``edge``; True when it is new or earlier than the occurrence known so far."""
        key = edge_key(edge)
        known = self.edges.get(key)
        if known is not None and known[:2] <= edge[:2]:
            return False
        self.edges[key] = edge
        return True

    def to_json(self) -> dict[str, object]:
        return {
            "e": list(self.edges.values()),
            "p": self.profile,
            "c": list(self.conflicts),
            "v": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Node:
        if not data:
            return cls()
        edges: dict[str, Edge] = {}
        for raw in data.get("e", ()):
            edge: Edge = (int(raw[0]), str(raw[1]), str(raw[2]), str(raw[3]), str(raw[4]))
            edges[edge_key(edge)] = edge
        return cls(
            edges=edges,
            profile=data.get("p"),
            conflicts=tuple(data.get("c", ())),
            version=int(data.get("v", -1)),
        )


@dataclass(frozen=True)
class Resolution:
    """The outcome of replaying one component: id -> profile, and refused claims per id."""

    profiles: dict[str, str]
    conflicts: dict[str, tuple[str, ...]]


def resolve(edges: Iterable[Edge]) -> Resolution:
    """Apply ``edges`` in event-time order; every endpoint gets its profile's canonical id.

    The canonical id of a profile is the root of its union-find tree: an alias makes the
    root of U's profile the root of P's, so the surviving id is the alias target's.
    """
    parent: dict[str, str] = {}
    identified: set[str] = set()
    refused: dict[str, set[str]] = {}

    def find(node: str) -> str:
        root = node
        while parent.get(root, root) != root:
            root = parent[root]
        while node != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    for _, _, kind, a, b in sorted(set(edges)):
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        identified.add(b)
        root_a, root_b = find(a), find(b)
        if root_a == root_b:
            continue
        if kind == ALIAS:
            parent[root_a] = root_b
        elif a not in identified and root_a == a:
            # An anonymous id nobody has claimed yet (it is its own, single-id profile).
            parent[a] = root_b
        else:
            refused.setdefault(a, set()).add(b)
    return Resolution(
        profiles={node: find(node) for node in parent},
        conflicts={node: tuple(sorted(users)) for node, users in refused.items()},
    )


def component(start: Iterable[str], load: Callable[[str], Node]) -> tuple[dict[str, Node], list[Edge]]:
    """Every id connected to ``start`` through any edge (accepted or refused), with its edges.

    Refused claims are part of the component because an earlier-timestamped event arriving
    later can turn a refusal into an ownership, and vice versa.
    """
    nodes: dict[str, Node] = {}
    edges: dict[str, Edge] = {}
    pending = list(start)
    while pending:
        current = pending.pop()
        if current in nodes:
            continue
        node = nodes[current] = load(current)
        for key, edge in node.edges.items():
            edges[key] = min(edges.get(key, edge), edge)
            for neighbour in (edge[3], edge[4]):
                if neighbour not in nodes:
                    pending.append(neighbour)
    return nodes, list(edges.values())
