"""The Avro codec: single-object encoding, fingerprints, and schema evolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from avro.codec import SCHEMA_DIR, AvroCodec, AvroDecodeError

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
