"""Per-id profile state: traits, group and Engage audiences. Pure functions, no I/O.

Every update is an idempotent, order-independent assignment: each trait, the group and each
audience keep the value of the latest event by ``(timestamp, messageId)`` (rules 5-7), so a
late-arriving old event, a replay after a crash, or a redelivered message (rule 8) cannot
change the outcome. A profile's state is the merge of its ids' states by the same rule,
computed where it is read, so an alias or a link never has to move state between ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# (timestamp µs, messageId): the order of events, ties broken deterministically.
Stamp = tuple[int, str]
# Audience history entries: (timestamp, messageId, member?).
MAX_AUDIENCE_HISTORY = 64


@dataclass
class IdState:
    """The state one id contributes to its profile. Serialised as compact JSON in the table."""

    traits: dict[str, tuple[Any, int, str]] = field(default_factory=dict)
    group: tuple[str, int, str] | None = None
    audiences: dict[str, list[tuple[int, str, bool]]] = field(default_factory=dict)
    version: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "t": {key: list(entry) for key, entry in self.traits.items()},
            "g": list(self.group) if self.group else None,
            "a": {key: [list(entry) for entry in history] for key, history in self.audiences.items()},
            "v": self.version,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> IdState:
        if not data:
            return cls()
        group = data.get("g")
        return cls(
            traits={
                key: (entry[0], int(entry[1]), str(entry[2])) for key, entry in data.get("t", {}).items()
            },
            group=(str(group[0]), int(group[1]), str(group[2])) if group else None,
            audiences={
                key: [(int(e[0]), str(e[1]), bool(e[2])) for e in history]
                for key, history in data.get("a", {}).items()
            },
            version=int(data.get("v", -1)),
        )


def merge_traits(current: dict[str, tuple[Any, int, str]], traits: Mapping[str, Any], stamp: Stamp) -> bool:
    """Per trait, keep the value of the latest event. True when anything changed."""
    changed = False
    for key, value in traits.items():
        known = current.get(key)
        if known is None or (known[1], known[2]) < stamp:
            current[key] = (value, stamp[0], stamp[1])
            changed = True
    return changed


def apply_identify(state: IdState, traits: Mapping[str, Any], stamp: Stamp, audience: str | None) -> bool:
    changed = merge_traits(state.traits, traits, stamp)
    if audience is not None and isinstance(traits.get(audience), bool):
        history = state.audiences.setdefault(audience, [])
        entry = (stamp[0], stamp[1], bool(traits[audience]))
        if entry not in history:
            history.append(entry)
            history.sort()
            del history[:-MAX_AUDIENCE_HISTORY]
            changed = True
    return changed


def apply_group(state: IdState, group_id: str, stamp: Stamp) -> bool:
    """The latest group call by event time wins (one group per user)."""
    if state.group is not None and (state.group[1], state.group[2]) >= stamp:
        return False
    state.group = (group_id, stamp[0], stamp[1])
    return True


def audience_membership(history: list[tuple[int, str, bool]]) -> dict[str, Any]:
    """Membership now, and when it was last entered and exited, from the event-time history."""
    member = False
    entered: int | None = None
    exited: int | None = None
    for timestamp, _, value in sorted(history):
        if value and not member:
            entered = timestamp
        elif not value and member:
            exited = timestamp
        member = value
    last = max(history)[0] if history else None
    return {"member": member, "time": last, "enteredAt": entered, "exitedAt": exited}


def snapshot(state: IdState) -> dict[str, Any]:
    """The published view of an id's state (the fields of avro/schemas/id_state)."""
    return {
        "traits": {key: entry[0] for key, entry in state.traits.items()},
        "traitTimes": {key: entry[1] for key, entry in state.traits.items()},
        "groupId": state.group[0] if state.group else None,
        "groupTime": state.group[1] if state.group else None,
        "audiences": {key: audience_membership(history) for key, history in state.audiences.items()},
    }
