"""Changes -> the Segment calls Engage sends for them. Pure, no I/O.

For an audience (``computation_class: audience``): an ``identify`` whose trait named after the
audience key is ``true`` on entry and ``false`` on exit, and a ``track`` named ``Audience
Entered`` / ``Audience Exited`` with ``properties.audience_key`` and the same boolean. For a
computed trait (``computation_class: trait``): an ``identify`` with the trait's new value
(``null`` when it no longer has one). Both carry ``context.personas`` (``computation_class``,
``computation_key``, ``computation_id``, ``namespace``, ``space_id``), the profile's
``userId`` (its ``anonymousId`` when it has none), the time of the change as ``timestamp``,
and a ``messageId`` derived from the change's (``<change id>.identify`` / ``.track``), so
every delivery of one change carries the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from feedhouse.audiences.definitions import AUDIENCE

LIBRARY = {"name": "feedhouse", "version": "0.1.0"}
ENTERED = "Audience Entered"
EXITED = "Audience Exited"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The columns of computed_changes a sender reads, in LoggedChange's field order.
LOGGED_COLUMNS = (
    "seq, kind, definition_key, computation_id, profile_id, user_id, anonymous_id, member, value,"
    " toUnixTimestamp64Micro(changed_at), message_id"
)


@dataclass(frozen=True, slots=True)
class LoggedChange:
    """A change as the senders read it from the log."""

    seq: int
    kind: str
    definition_key: str
    computation_id: str
    profile_id: str
    user_id: str
    anonymous_id: str
    member: bool
    value: str
    changed_at: int
    message_id: str

    @classmethod
    def of(cls, row: Any) -> LoggedChange:
        seq, kind, key, computation_id, profile, user_id, anonymous_id, member, value, at, message_id = row
        return cls(
            int(seq),
            str(kind),
            str(key),
            str(computation_id),
            str(profile),
            str(user_id),
            str(anonymous_id),
            bool(member),
            str(value),
            int(at),
            str(message_id),
        )


def iso(micros: int) -> str:
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def personas(change: LoggedChange, space_id: str) -> dict[str, str]:
    """``context.personas`` as Engage fills it (the space id doubles as the namespace)."""
    return {
        "computation_class": change.kind,
        "computation_key": change.definition_key,
        "computation_id": change.computation_id,
        "namespace": space_id,
        "space_id": space_id,
    }


def messages_for(change: LoggedChange, space_id: str) -> list[dict[str, Any]]:
    """The calls one change becomes: identify (+ track for an audience)."""
    who: dict[str, str] = (
        {"userId": change.user_id} if change.user_id else {"anonymousId": change.anonymous_id}
    )
    common = {
        **who,
        "timestamp": iso(change.changed_at),
        "context": {"personas": personas(change, space_id), "library": LIBRARY},
    }
    key = change.definition_key
    if change.kind != AUDIENCE:
        value = orjson.loads(change.value) if change.value else None
        return [
            {
                "type": "identify",
                "messageId": f"{change.message_id}.identify",
                "traits": {key: value},
                **common,
            }
        ]
    return [
        {
            "type": "identify",
            "messageId": f"{change.message_id}.identify",
            "traits": {key: change.member},
            **common,
        },
        {
            "type": "track",
            "messageId": f"{change.message_id}.track",
            "event": ENTERED if change.member else EXITED,
            "properties": {"audience_key": key, key: change.member},
            **common,
        },
    ]
