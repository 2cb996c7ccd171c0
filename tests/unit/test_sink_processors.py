"""Avro record -> ClickHouse row: the pure half of the sink."""

from __future__ import annotations

from typing import Any

import pytest

from feedhouse.settings import DEFAULT_PLACEHOLDER_IDS
from sink import processors
from sink.processors import (
    EVENT_COLUMNS,
    GROUP_STATE_COLUMNS,
    ID_MAPPING_COLUMNS,
    ID_STATE_COLUMNS,
    MAX_MICROS,
    MIN_MICROS,
    REJECTED_COLUMNS,
    person_key,
    process_event,
)

PLACEHOLDERS = frozenset(DEFAULT_PLACEHOLDER_IDS)
T = 1_700_000_000_123_456


def event(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "track",
        "messageId": "m-1",
        "userId": "u-1",
        "anonymousId": "a-1",
        "groupId": None,
        "previousId": None,
        "event": "Order Completed",
        "name": None,
        "category": None,
        "timestamp": T,
        "receivedAt": T + 5,
        "originalTimestamp": "2023-11-14T22:13:20.123Z",
        "sentAt": None,
        "properties": '{"revenue":42.5}',
        "traits": None,
        "context": '{"ip":"1.2.3.4"}',
        "integrations": None,
        "extra": '{"custom":1}',
        "sourceId": "abc123",
    }
    record.update(fields)
    return record


def test_event_row_follows_the_column_order() -> None:
    row = dict(zip(EVENT_COLUMNS, process_event(event()), strict=True))
    assert row == {
        "message_id": "m-1",
        "type": "track",
        "user_id": "u-1",
        "anonymous_id": "a-1",
        "group_id": "",
        "previous_id": "",
        "event": "Order Completed",
        "name": "",
        "category": "",
        "timestamp": T,
        "received_at": T + 5,
        "original_timestamp": "2023-11-14T22:13:20.123Z",
        "sent_at": "",
        "properties": '{"revenue":42.5}',
        "traits": "",
        "context": '{"ip":"1.2.3.4"}',
        "integrations": "",
        "extra": '{"custom":1}',
        "source_id": "abc123",
        "person_key": "u-1",
    }


@pytest.mark.parametrize(
    ("user_id", "anonymous_id", "expected"),
    [
        ("u", "a", "u"),
        (None, "a", "a"),
        ("", "a", "a"),
        ("undefined", "a", "a"),
        (" NULL ", "a", "a"),
        ("[object Object]", "a", "a"),
        ("u", None, "u"),
        (None, None, ""),
        ("anonymous", "0", ""),
        ("guest", "unknown", ""),
    ],
)
def test_person_key_skips_empty_and_placeholder_ids(
    user_id: str | None, anonymous_id: str | None, expected: str
) -> None:
    assert person_key(user_id, anonymous_id, PLACEHOLDERS) == expected
    row = process_event(event(userId=user_id, anonymousId=anonymous_id))
    assert row[EVENT_COLUMNS.index("person_key")] == expected
    # The raw ids are stored as sent, placeholders included.
    assert row[EVENT_COLUMNS.index("user_id")] == (user_id or "")


def test_custom_placeholder_list() -> None:
    row = process_event(event(userId="test-user"), placeholders=frozenset({"test-user"}))
    assert row[EVENT_COLUMNS.index("person_key")] == "a-1"


def test_times_outside_datetime64_are_clamped() -> None:
    row = process_event(event(timestamp=-(10**18), receivedAt=10**18))
    assert row[EVENT_COLUMNS.index("timestamp")] == MIN_MICROS
    assert row[EVENT_COLUMNS.index("received_at")] == MAX_MICROS
    assert processors.clamp_micros(T) == T


def test_identity_rows() -> None:
    mapping = {"id": "a-1", "profileId": "u-1", "version": 7, "conflicts": ["u-2"], "updatedAt": T}
    assert processors.process_id_mapping(mapping) == ("a-1", "u-1", 7, ["u-2"], T)
    assert len(ID_MAPPING_COLUMNS) == 5

    state = {
        "id": "u-1",
        "traits": '{"email":"a@b.c"}',
        "traitTimes": '{"email":1}',
        "groupId": None,
        "groupTime": None,
        "audiences": "{}",
        "version": 3,
        "updatedAt": T,
    }
    assert processors.process_id_state(state) == (
        "u-1",
        '{"email":"a@b.c"}',
        '{"email":1}',
        "",
        None,
        "{}",
        3,
        T,
    )
    assert processors.process_id_state({**state, "groupId": "g", "groupTime": T})[3:5] == ("g", T)
    assert len(ID_STATE_COLUMNS) == 8

    group = {"groupId": "g", "traits": "{}", "traitTimes": "{}", "version": 2, "updatedAt": T}
    assert processors.process_group_state(group) == ("g", "{}", "{}", 2, T)
    assert len(GROUP_STATE_COLUMNS) == 5


def test_rejected_row() -> None:
    record = {
        "code": "missing_event",
        "message": "track requires event",
        "receivedAt": T,
        "path": "/v1/batch",
        "index": 3,
        "sourceId": None,
        "payload": "{}",
    }
    row = processors.process_rejected(record)
    assert dict(zip(REJECTED_COLUMNS, row, strict=True)) == {
        "received_at": T,
        "code": "missing_event",
        "message": "track requires event",
        "path": "/v1/batch",
        "batch_index": 3,
        "source_id": "",
        "payload": "{}",
    }


def test_a_record_missing_a_field_raises() -> None:
    # The sink turns this into a dead letter; the processor itself never guesses.
    with pytest.raises(KeyError):
        processors.process_id_mapping({"id": "x"})
