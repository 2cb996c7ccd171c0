"""The Avro codec: single-object encoding, fingerprints, and schema evolution."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from feedhouse.avro.codec import SCHEMA_DIR, AvroCodec, AvroDecodeError
from feedhouse.avro.flat import read_long, write_long

EVENT = {
    "type": "track",
    "messageId": "m1",
    "userId": "u1",
    "anonymousId": None,
    "groupId": None,
    "previousId": None,
    "event": "Signed Up",
    "name": None,
    "category": None,
    "timestamp": 1_700_000_000_000_000,
    "receivedAt": 1_700_000_000_000_001,
    "originalTimestamp": "2023-11-14T22:13:20Z",
    "sentAt": None,
    "properties": '{"plan":"pro"}',
    "traits": None,
    "context": "{}",
    "integrations": None,
    "extra": None,
    "sourceId": "abc",
}


def test_round_trip_with_single_object_header() -> None:
    codec = AvroCodec("event")
    data = codec.encode(EVENT)
    assert data[:2] == b"\xc3\x01" and data[2:10] == codec.fingerprint
    assert codec.decode(data) == EVENT


def test_record_written_today_reads_after_a_compatible_change(tmp_path: Path) -> None:
    written = AvroCodec("event").encode(EVENT)
    # Tomorrow's schema: a new optional field. Today's version stays known to the reader.
    shutil.copy(SCHEMA_DIR / "event.v1.avsc", tmp_path / "event.v1.avsc")
    evolved = json.loads((SCHEMA_DIR / "event.v1.avsc").read_text())
    evolved["fields"].append({"name": "consent", "type": ["null", "string"], "default": None})
    (tmp_path / "event.v2.avsc").write_text(json.dumps(evolved))

    tomorrow = AvroCodec("event", tmp_path)
    assert tomorrow.version == 2
    assert tomorrow.decode(written) == {**EVENT, "consent": None}
    # And the new writer's records carry the new fingerprint.
    assert tomorrow.encode({**EVENT, "consent": "granted"})[2:10] != written[2:10]


@pytest.mark.parametrize("data", [b"", b"{}", b"\xc3\x01" + b"\x00" * 8 + b"\x02", b"\xc3\x01\x01"])
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(AvroDecodeError):
        AvroCodec("event").decode(data)


def test_truncated_body_is_a_decode_error() -> None:
    codec = AvroCodec("event")
    with pytest.raises(AvroDecodeError):
        codec.decode(codec.encode(EVENT)[:20])


optional_text = st.none() | st.text(max_size=80)
event_records = st.fixed_dictionaries(
    {
        "type": st.text(max_size=10),
        "messageId": st.text(max_size=100),
        # Lengths of 8 KiB and more take the writer's general varint path.
        "userId": optional_text,
        "anonymousId": optional_text,
        "groupId": optional_text,
        "previousId": optional_text,
        "event": optional_text,
        "name": optional_text,
        "category": optional_text,
        "timestamp": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "receivedAt": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "originalTimestamp": optional_text,
        "sentAt": optional_text,
        "properties": st.none() | st.text(max_size=20) | st.text(min_size=8192, max_size=9000),
        "traits": optional_text,
        "context": optional_text,
        "integrations": optional_text,
        "extra": optional_text,
        "sourceId": st.text(max_size=12),
    }
)


@settings(max_examples=300, deadline=None)
@given(record=event_records)
def test_fast_flat_writer_matches_fastavro_byte_for_byte(record: dict) -> None:
    codec = AvroCodec("event")
    reference = io.BytesIO()
    schemaless_writer(reference, codec.schema, record)
    assert codec.encode(record) == codec.fingerprint_header + reference.getvalue()
    assert codec.decode(codec.encode(record)) == record


@settings(max_examples=100, deadline=None)
@given(
    conflicts=st.lists(st.text(max_size=20), max_size=5), version=st.integers(min_value=0, max_value=2**62)
)
def test_fast_writer_handles_arrays(conflicts: list[str], version: int) -> None:
    codec = AvroCodec("id_mapping")
    record = {"id": "a", "profileId": "u", "version": version, "conflicts": conflicts, "updatedAt": 1}
    assert codec.decode(codec.encode(record)) == record


@pytest.mark.parametrize(
    "value",
    [0, 63, 64, -1, -64, -65, 8191, 8192, 16383, 16384, 2**28, 1_764_000_000_000_000, -(2**63), 2**63 - 1],
)
def test_write_long_matches_fastavro_at_every_varint_boundary(value: int) -> None:
    reference = io.BytesIO()
    schemaless_writer(reference, "long", value)
    assert write_long(value) == reference.getvalue()
    assert read_long(write_long(value), 0) == (value, len(reference.getvalue()))
