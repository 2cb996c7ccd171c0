"""Table descriptions derived from the Avro schemas, and the rows the sink builds with them."""

from __future__ import annotations

from typing import Any

import pytest

from feedhouse.avro.codec import newest_schema
from feedhouse.avro.event_prefix import LAYOUT as PREFIX_LAYOUT
from feedhouse.clickhouse.tables import (
    EVENTS,
    GROUP_STATE,
    ID_MAPPING,
    ID_STATE,
    MAX_MICROS,
    MIN_MICROS,
    REJECTED_EVENTS,
    TABLES,
    clamp_micros,
    snake_case,
)
from feedhouse.ids import DEFAULT_PLACEHOLDER_IDS, person_key
from feedhouse.sink.routes import TOPIC_TABLES

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


process_event = EVENTS.row_builder(placeholders=PLACEHOLDERS)
process_id_mapping = ID_MAPPING.row_builder()
process_id_state = ID_STATE.row_builder()
process_group_state = GROUP_STATE.row_builder()
process_rejected = REJECTED_EVENTS.row_builder()
EVENT_COLUMNS = EVENTS.column_names


def test_every_schema_field_is_a_column_in_schema_order() -> None:
    for table in TABLES.values():
        fields = [field["name"] for field in newest_schema(table.schema)["fields"]]
        sourced = [column.field for column in table.columns if column.field is not None]
        assert sourced == fields, f"{table.name}: columns come from {sourced}, schema has {fields}"
        renamed = {"index": "batch_index"}
        assert [c.name for c in table.columns if c.field] == [renamed.get(f, snake_case(f)) for f in fields]


def test_the_sink_routes_every_table() -> None:
    assert set(TOPIC_TABLES.values()) == set(TABLES.values())


def test_the_prefix_decoder_layout_is_the_schema_prefix() -> None:
    fields = newest_schema("event")["fields"]
    names = [name for name, _ in PREFIX_LAYOUT]
    assert names == [field["name"] for field in fields[: len(names)]]
    assert names[-1] == "context", "the router needs fields up to context"
    for (name, nullable), field in zip(PREFIX_LAYOUT, fields, strict=False):
        expected = None if field["type"] == "long" else isinstance(field["type"], list)
        assert nullable == expected, f"{name}: layout says {nullable}, schema says {field['type']}"


def test_typed_rows_name_every_column() -> None:
    row = EVENTS.row_type._make(process_event(event()))  # type: ignore[attr-defined]
    assert row.message_id == "m-1" and row.person_key == "u-1"
    assert row._fields == EVENT_COLUMNS


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
    row = EVENTS.row_builder(placeholders=frozenset({"test-user"}))(event(userId="test-user"))
    assert row[EVENT_COLUMNS.index("person_key")] == "a-1"


def test_times_outside_datetime64_are_clamped() -> None:
    row = process_event(event(timestamp=-(10**18), receivedAt=10**18))
    assert row[EVENT_COLUMNS.index("timestamp")] == MIN_MICROS
    assert row[EVENT_COLUMNS.index("received_at")] == MAX_MICROS
    assert clamp_micros(T) == T


def test_identity_rows() -> None:
    mapping = {"id": "a-1", "profileId": "u-1", "version": 7, "conflicts": ["u-2"], "updatedAt": T}
    assert process_id_mapping(mapping) == ("a-1", "u-1", 7, ["u-2"], T)
    assert ID_MAPPING.column_names == ("id", "profile_id", "version", "conflicts", "updated_at")

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
    assert process_id_state(state) == (
        "u-1",
        '{"email":"a@b.c"}',
        '{"email":1}',
        "",
        None,
        "{}",
        3,
        T,
    )
    assert process_id_state({**state, "groupId": "g", "groupTime": T})[3:5] == ("g", T)

    group = {"groupId": "g", "traits": "{}", "traitTimes": "{}", "version": 2, "updatedAt": T}
    assert process_group_state(group) == ("g", "{}", "{}", 2, T)


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
    row = process_rejected(record)
    assert dict(zip(REJECTED_EVENTS.column_names, row, strict=True)) == {
        "received_at": T,
        "code": "missing_event",
        "message": "track requires event",
        "path": "/v1/batch",
        "batch_index": 3,
        "source_id": "",
        "payload": "{}",
    }


def test_a_record_missing_a_field_raises() -> None:
    # The sink turns this into a dead letter; the row builder itself never guesses.
    with pytest.raises(KeyError):
        process_id_mapping({"id": "x"})


def test_a_derived_column_without_its_arguments_is_refused() -> None:
    with pytest.raises(TypeError, match="placeholders"):
        EVENTS.row_builder()
