"""Decoded Avro record -> ClickHouse row: one pure function per topic, no I/O.

Each ``process_<kind>`` returns a tuple in the order of its table's ``*_COLUMNS``. Optional
strings become ``''`` (ClickHouse strings are not Nullable here: cheaper, and '' means absent in
every query we document). Times stay integers: microseconds since the epoch are exactly the
ticks of a ``DateTime64(6)`` column, so no datetime objects are built per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feedhouse.settings import DEFAULT_PLACEHOLDER_IDS

Row = tuple[Any, ...]

# DateTime64 covers [1900-01-01, 2299-12-31 23:59:59.999999]; outside it ClickHouse stores
# garbage that cannot be read back. Client clocks do send such times (the gateway accepts any
# ISO-8601 value), so they are clamped; original_timestamp keeps what the client sent.
MIN_MICROS = -2_208_988_800_000_000
MAX_MICROS = 10_413_791_999_999_999

EVENT_COLUMNS = (
    "message_id",
    "type",
    "user_id",
    "anonymous_id",
    "group_id",
    "previous_id",
    "event",
    "name",
    "category",
    "timestamp",
    "received_at",
    "original_timestamp",
    "sent_at",
    "properties",
    "traits",
    "context",
    "integrations",
    "extra",
    "source_id",
    "person_key",
)
ID_MAPPING_COLUMNS = ("id", "profile_id", "version", "conflicts", "updated_at")
ID_STATE_COLUMNS = (
    "id",
    "traits",
    "trait_times",
    "group_id",
    "group_time",
    "audiences",
    "version",
    "updated_at",
)
GROUP_STATE_COLUMNS = ("group_id", "traits", "trait_times", "version", "updated_at")
REJECTED_COLUMNS = ("received_at", "code", "message", "path", "batch_index", "source_id", "payload")

_DEFAULT_PLACEHOLDERS = frozenset(DEFAULT_PLACEHOLDER_IDS)


def clamp_micros(value: int) -> int:
    """``value`` limited to the range a ``DateTime64(6)`` column can hold."""
    if value < MIN_MICROS:
        return MIN_MICROS
    if value > MAX_MICROS:
        return MAX_MICROS
    return value


def person_key(user_id: str | None, anonymous_id: str | None, placeholders: frozenset[str]) -> str:
    """The id an event belongs to: userId unless empty or a placeholder, else anonymousId, else ''.

    Same rule as the gateway's partition key and the identity router, so the events of one
    person, their Kafka partition and their identity rows agree on the id.
    """
    if user_id and user_id.strip().lower() not in placeholders:
        return user_id
    if anonymous_id and anonymous_id.strip().lower() not in placeholders:
        return anonymous_id
    return ""


def process_event(record: Mapping[str, Any], placeholders: frozenset[str] = _DEFAULT_PLACEHOLDERS) -> Row:
    """An ``event`` record as a row of ``events``."""
    user_id = record["userId"]
    anonymous_id = record["anonymousId"]
    return (
        record["messageId"],
        record["type"],
        user_id or "",
        anonymous_id or "",
        record["groupId"] or "",
        record["previousId"] or "",
        record["event"] or "",
        record["name"] or "",
        record["category"] or "",
        clamp_micros(record["timestamp"]),
        clamp_micros(record["receivedAt"]),
        record["originalTimestamp"] or "",
        record["sentAt"] or "",
        record["properties"] or "",
        record["traits"] or "",
        record["context"] or "",
        record["integrations"] or "",
        record["extra"] or "",
        record["sourceId"],
        person_key(user_id, anonymous_id, placeholders),
    )


def process_id_mapping(record: Mapping[str, Any]) -> Row:
    """An ``id_mapping`` record as a row of ``id_mapping``."""
    return (
        record["id"],
        record["profileId"],
        record["version"],
        list(record["conflicts"]),
        clamp_micros(record["updatedAt"]),
    )


def process_id_state(record: Mapping[str, Any]) -> Row:
    """An ``id_state`` record as a row of ``id_state``."""
    group_time = record["groupTime"]
    return (
        record["id"],
        record["traits"],
        record["traitTimes"],
        record["groupId"] or "",
        None if group_time is None else clamp_micros(group_time),
        record["audiences"],
        record["version"],
        clamp_micros(record["updatedAt"]),
    )


def process_group_state(record: Mapping[str, Any]) -> Row:
    """A ``group_state`` record as a row of ``group_state``."""
    return (
        record["groupId"],
        record["traits"],
        record["traitTimes"],
        record["version"],
        clamp_micros(record["updatedAt"]),
    )


def process_rejected(record: Mapping[str, Any]) -> Row:
    """A ``rejected`` record as a row of ``rejected_events``."""
    return (
        clamp_micros(record["receivedAt"]),
        record["code"],
        record["message"],
        record["path"],
        record["index"],
        record["sourceId"] or "",
        record["payload"],
    )
