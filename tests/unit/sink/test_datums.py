"""Events as datums for ClickHouse: what Python reads of each, and what it hands over (checked
by decoding the container with fastavro, an independent Avro reader)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from feedhouse.avro.codec import AvroCodec, AvroDecodeError
from feedhouse.clickhouse.tables import EVENTS, MAX_MICROS, MIN_MICROS
from feedhouse.ids import DEFAULT_PLACEHOLDERS
from feedhouse.sink.datums import EventDatums

T = 1_767_225_600_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CODEC = AvroCodec("event")


def event(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {field["name"]: None for field in CODEC.raw_schema["fields"]}
    record.update({"type": "track", "messageId": "m-1", "timestamp": T, "receivedAt": T + 5, "sourceId": "s"})
    return {**record, **fields}


def decoded(datums: EventDatums, *records: dict[str, Any]) -> list[dict[str, Any]]:
    container = datums.container([datums.datum(CODEC.encode(record))[0] for record in records])
    return list(fastavro.reader(io.BytesIO(container)))  # type: ignore[arg-type]


def test_a_datum_is_the_record_under_column_names_with_its_person_key() -> None:
    datums = EventDatums(DEFAULT_PLACEHOLDERS)
    record = event(userId="undefined", anonymousId="anon-7", properties='{"a": 1}', event="Paid")
    [row] = decoded(datums, record)
    assert list(row) == list(EVENTS.column_names)
    assert row["person_key"] == "anon-7", "a placeholder userId is no one's"
    assert (row["message_id"], row["event"], row["properties"], row["user_id"]) == (
        "m-1",
        "Paid",
        '{"a": 1}',
        "undefined",
    )
    assert fastavro_micros(row["timestamp"]) == T


def test_the_scanned_fields_are_what_the_deleted_people_rule_needs() -> None:
    datums = EventDatums(DEFAULT_PLACEHOLDERS)
    _, fields = datums.datum(CODEC.encode(event(userId="u", previousId="old", timestamp=T - 1)))
    assert fields == ["u", None, "old", T - 1, T + 5]


def test_times_a_datetime64_cannot_hold_are_clamped() -> None:
    datums = EventDatums(DEFAULT_PLACEHOLDERS)
    [row] = decoded(datums, event(userId="u", timestamp=MIN_MICROS - 10**12, receivedAt=MAX_MICROS + 1))
    assert fastavro_micros(row["timestamp"]) == MIN_MICROS
    assert fastavro_micros(row["received_at"]) == MAX_MICROS


def fastavro_micros(value: datetime) -> int:
    return (value - EPOCH) // timedelta(microseconds=1)


def test_a_corrupt_record_is_refused_by_name() -> None:
    datums = EventDatums(DEFAULT_PLACEHOLDERS)
    good = CODEC.encode(event(userId="u"))
    with pytest.raises(AvroDecodeError):
        datums.datum(good[:14])
    with pytest.raises(AvroDecodeError):
        datums.datum(b"\xc3\x01garbage, not avro")
