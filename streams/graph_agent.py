"""The graph agent: claims and aliases in, id -> profile mapping changes out (rules 3, 4, 9), and
each changed profile's ids (``identity-profiles``: the read side's "every id of this profile")."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any, NamedTuple

import faust

from feedhouse.avro.codec import AvroCodec
from feedhouse.settings import Settings
from feedhouse.streams.changelog import changelog_table
from feedhouse.streams.dead_letter import AgentDeadLetters
from feedhouse.streams.graph import ALIAS, CLAIM, FORGET, Edge, Node, component, resolve
from feedhouse.streams.metrics import CONFLICTS, MAPPING_CHANGES, MERGES
from feedhouse.streams.outputs import Outputs
from feedhouse.streams.overlay import TableOverlay, seal_changelogs
from feedhouse.streams.router import version_of

# A profile with more ids is published without them (``overflow``): a record stays far below
# Kafka's message size limit, and readers list such a profile's ids from id_mapping_by_profile.
MEMBERS_LIMIT = 2000


class GraphOutput(NamedTuple):
    """What one batch of commands publishes: mapping records (by id), membership records (by profile)."""

    mappings: list[dict[str, Any]]
    memberships: list[dict[str, Any]]


class GraphProcessor:
    """Applies one graph command to the node table and returns the mapping records to publish.

    The membership records of the profiles those changes touched (the one an id joined, the one
    it left) collect on the side, taken with :meth:`take_memberships`. Kept free of Faust types
    so it can be driven by the agent or by a test with a dict.
    """

    def __init__(self, nodes: Any) -> None:
        self.nodes = nodes  # a Faust table (or any dict-like): id -> Node JSON
        self._memberships: dict[str, dict[str, Any]] = {}  # by profile: the newest wins

    def _load(self, key: str) -> Node:
        return Node.from_json(self.nodes.get(key))

    def forget(self, key: str, version: int) -> list[dict[str, Any]]:
        """Remove ``key`` from the graph (its person was deleted: privacy.executor).

        Its node goes (a changelog tombstone); neighbours of *other* people (a refused claim on
        a shared device) lose their edges to it, and their mappings are published again, since
        their conflicts may change.
        """
        node = self.nodes.get(key)
        if node is None:
            return []
        neighbours = {end for edge in Node.from_json(node).edges.values() for end in edge[3:5]} - {key}
        del self.nodes[key]
        records: list[dict[str, Any]] = []
        for other in sorted(neighbours):
            kept = Node.from_json(self.nodes.get(other))
            before = len(kept.edges)
            kept.edges = {k: e for k, e in kept.edges.items() if key not in e[3:5]}
            if len(kept.edges) == before:
                continue
            self.nodes[other] = kept.to_json()
            records += self.apply({"kind": "refresh", "id": other, "target": None}, version)
        return records

    def apply_batch(self, commands: list[dict[str, Any]], offset: int) -> GraphOutput:
        """Apply one batch of commands (the record at ``offset``); the records to publish.

        A person's ids are forgotten together, in one batch: forgetting the first republishes
        the others (its neighbours) before their turn comes, and those records would land in
        ClickHouse after the executor masked the person. Nothing is published for an id the
        batch forgets. (The executor sends up to 5,000 commands per batch: a person whose ids
        straddle two batches may have records published, which its later passes mask.)
        """
        forgotten = {str(command["id"]) for command in commands if command["kind"] == FORGET}
        records = [
            record
            for position, command in enumerate(commands)
            for record in self.apply(command, version_of(offset, position))
        ]
        memberships = self.take_memberships()
        if forgotten:
            records = [record for record in records if record["id"] not in forgotten]
            memberships = [record for record in memberships if record["profileId"] not in forgotten]
        return GraphOutput(records, memberships)

    def take_memberships(self) -> list[dict[str, Any]]:
        """The membership records collected since the last call (one per profile, the newest)."""
        taken, self._memberships = list(self._memberships.values()), {}
        return taken

    def _collect_memberships(
        self, nodes: Mapping[str, Node], profiles: Iterable[str], version: int, now: int
    ) -> None:
        """Record the ids of each of ``profiles`` now; ``nodes`` is a component already resolved.

        A profile an id left is in the same component (edges are only ever added), except after
        a forget split one: then its own component is walked.
        """
        for profile in sorted(set(profiles)):
            if profile in nodes:
                ids = [key for key, node in nodes.items() if (node.profile or key) == profile]
            elif profile in self.nodes:
                others, _ = component([profile], self._load)
                ids = [key for key, node in others.items() if (node.profile or key) == profile]
            else:
                ids = []  # forgotten: no longer in the graph
            overflow = len(ids) > MEMBERS_LIMIT
            self._memberships[profile] = {
                "profileId": profile,
                "ids": [] if overflow else sorted(ids),
                "overflow": overflow,
                "version": version,
                "updatedAt": now,
            }

    def apply(self, command: dict[str, Any], version: int) -> list[dict[str, Any]]:
        """Apply one claim/alias; ``version`` orders commands (offset and batch position)."""
        kind, a, b = command["kind"], command["id"], command["target"]
        if kind == FORGET:
            return self.forget(a, version)
        if kind == "refresh":  # recompute a's component after edges were removed
            return self._republish(a, version)
        if kind not in (CLAIM, ALIAS) or not b or a == b:
            return []
        edge: Edge = (int(command["timestamp"]), str(command["messageId"]), kind, a, b)
        node_a, node_b = self._load(a), self._load(b)
        added = node_a.add(edge) | node_b.add(edge)
        # Versions at or below a node's version were processed before a restart: their
        # outputs may not have reached Kafka, so publish the component again.
        replayed = version <= max(node_a.version, node_b.version)
        if not added and not replayed:
            return []
        loaded = {a: node_a, b: node_b}
        nodes, edges = component([a, b], lambda key: loaded.get(key) or self._load(key))
        resolution = resolve(edges)
        now = time.time_ns() // 1000
        records: list[dict[str, Any]] = []
        touched: set[str] = set()
        for key, node in nodes.items():
            profile = resolution.profiles.get(key, key)
            conflicts = resolution.conflicts.get(key, ())
            changed = profile != node.profile or conflicts != node.conflicts
            if changed or replayed:
                # An id new to the graph was a profile of its own, with no record to correct.
                touched.update((profile, node.profile or profile))
            if changed:
                if (node.profile is not None and profile != node.profile) or (
                    node.profile is None and profile != key
                ):
                    MERGES.inc()
                CONFLICTS.inc(len(set(conflicts) - set(node.conflicts)))
                node.profile, node.conflicts, node.version = profile, conflicts, version
            if changed or (added and key in loaded):
                self.nodes[key] = node.to_json()  # re-assign: in-place changes never reach the changelog
            if changed or replayed:
                records.append(
                    {
                        "id": key,
                        "profileId": profile,
                        "version": node.version,
                        "conflicts": list(conflicts),
                        "updatedAt": now,
                    }
                )
        self._collect_memberships(nodes, touched, version, now)
        MAPPING_CHANGES.inc(len(records))
        return records

    def _republish(self, start: str, version: int) -> list[dict[str, Any]]:
        nodes, edges = component([start], self._load)
        resolution = resolve(edges)
        now = time.time_ns() // 1000
        records = []
        touched: set[str] = set()
        for key, node in nodes.items():
            profile = resolution.profiles.get(key, key)
            conflicts = resolution.conflicts.get(key, ())
            if profile != node.profile or conflicts != node.conflicts:
                touched.update((profile, node.profile or profile))
                node.profile, node.conflicts, node.version = profile, conflicts, version
                self.nodes[key] = node.to_json()
                records.append(
                    {
                        "id": key,
                        "profileId": profile,
                        "version": version,
                        "conflicts": list(conflicts),
                        "updatedAt": now,
                    }
                )
        self._collect_memberships(nodes, touched, version, now)
        MAPPING_CHANGES.inc(len(records))
        return records


def register_graph_agent(
    app: faust.App, settings: Settings, dead_letters: AgentDeadLetters, outputs: Outputs
) -> None:
    batches = AvroCodec("identity_batch")
    mappings = AvroCodec("id_mapping")
    memberships = AvroCodec("profile_members")
    source = app.topic(
        settings.topic("identity-graph"),
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=1,
    )
    sink = settings.topic("identity-mapping")
    profiles = settings.topic("identity-profiles")
    nodes = TableOverlay(changelog_table(app, outputs, "identity-graph-nodes", partitions=1))
    processor = GraphProcessor(nodes)

    @app.agent(source, name="identity-graph")
    async def graph(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        # Event by event: table writes need Faust's current-event context (take() loses it).
        async for event in stream.events():
            batch = dead_letters.decode(batches, event, "identity-graph")
            if batch is not None:
                offset = event.message.offset
                output = processor.apply_batch(batch["commands"], offset)
                for record in output.mappings:
                    outputs.publish(sink, record["id"].encode(), mappings.encode(record))
                for record in output.memberships:
                    outputs.publish(profiles, record["profileId"].encode(), memberships.encode(record))
                if nodes.flush() and settings.changelog_seals:
                    seal_changelogs(outputs, [nodes], version_of(offset, 0))
            yield None
