"""The router's partial event decoder agrees with the full codec on every field it reads."""

from __future__ import annotations

import pytest

from feedhouse.avro.codec import AvroCodec, AvroDecodeError
from feedhouse.avro.event_prefix import EventPrefixDecoder
from feedhouse.gateway.normalize import normalize
from tests.support.datagen import generate

CODEC = AvroCodec("event")
DECODER = EventPrefixDecoder(CODEC)
IDENTITY_FIELDS = {"type", "messageId", "userId", "anonymousId", "groupId", "previousId", "timestamp"}


def records() -> list[dict]:
    calls = generate(3000, seed=5, profiles=300)
    return [normalize(call, event_type=None, received_at=1, source_id="s") for call in calls]


def test_prefix_matches_full_decode() -> None:
    seen_types = set()
    for record in records():
        decoded = DECODER.decode(CODEC.encode(record))
        assert decoded.keys() >= IDENTITY_FIELDS
        assert {key: record[key] for key in decoded} == decoded
        if record["type"] in ("identify", "group"):
            assert decoded["traits"] == record["traits"] and decoded["context"] == record["context"]
        seen_types.add(record["type"])
    assert seen_types == {"identify", "track", "page", "screen", "group", "alias"}


@pytest.mark.parametrize("cut", [11, 15, 30])
def test_truncated_records_are_decode_errors(cut: int) -> None:
    data = CODEC.encode(records()[0])
    with pytest.raises(AvroDecodeError):
        DECODER.decode(data[:cut])
