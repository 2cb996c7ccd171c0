"""Segment validation and normalisation rules, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest

from feedhouse.gateway.normalize import BatchDefaults, Rejection, micros, normalize, parse_time

RECEIVED = micros(datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC))


def norm(message: object, event_type: str | None = None, **kwargs: object) -> dict:
    return normalize(
        message,
        event_type=event_type,
        received_at=RECEIVED,
        source_id="src",
        **kwargs,  # type: ignore[arg-type]
    )


def rejected(message: object, event_type: str | None = None, **kwargs: object) -> Rejection:
    with pytest.raises(Rejection) as info:
        norm(message, event_type, **kwargs)
    return info.value


def test_track_keeps_every_segment_field() -> None:
    record = norm(
        {
            "userId": "u1",
            "anonymousId": "a1",
            "event": "Order Completed",
            "messageId": "m1",
            "properties": {"revenue": 12.5},
            "context": {"ip": "1.2.3.4"},
            "integrations": {"All": False},
        },
        "track",
    )
    assert record["type"] == "track"
    assert (record["userId"], record["anonymousId"], record["event"], record["messageId"]) == (
        "u1",
        "a1",
        "Order Completed",
        "m1",
    )
    assert orjson.loads(record["properties"]) == {"revenue": 12.5}
    assert orjson.loads(record["context"]) == {"ip": "1.2.3.4"}
    assert orjson.loads(record["integrations"]) == {"All": False}
    assert record["receivedAt"] == RECEIVED
    assert record["timestamp"] == RECEIVED  # no timestamp sent: the time it arrived
    assert record["extra"] is None


@pytest.mark.parametrize(
    ("message", "event_type", "code"),
    [
        ({"event": "x"}, "track", "missing_user_id"),
        ({"userId": "", "anonymousId": "  ", "event": "x"}, "track", "missing_user_id"),
        ({"userId": "u"}, "track", "missing_event"),
        ({"userId": "u", "event": ""}, "track", "missing_event"),
        ({"userId": "u"}, "group", "missing_group_id"),
        ({"userId": "u"}, "alias", "missing_previous_id"),
        ({"previousId": "p", "anonymousId": "a"}, "alias", "missing_user_id"),
        ({"userId": True, "event": "x"}, "track", "invalid_id"),
        ({"userId": {"id": 1}, "event": "x"}, "track", "invalid_id"),
        ({"userId": "u", "event": "x", "properties": [1]}, "track", "invalid_field"),
        ({"userId": "u", "traits": "vip"}, "identify", "invalid_field"),
        ({"userId": "u", "event": 42}, "track", "invalid_field"),
        ({"userId": "u", "event": "x", "timestamp": "yesterday"}, "track", "invalid_timestamp"),
        ({"userId": "u", "event": "x", "timestamp": 1700000000}, "track", "invalid_timestamp"),
        ({"userId": "u", "event": "x", "messageId": "m" * 100}, "track", "invalid_message_id"),
        ({"userId": "u", "type": "purchase"}, None, "invalid_type"),
        ({"userId": "u"}, None, "invalid_type"),
        ([1, 2], None, "invalid_event"),
    ],
)
def test_spec_violations_are_named(message: object, event_type: str | None, code: str) -> None:
    assert rejected(message, event_type).code == code


def test_rejection_message_names_the_field() -> None:
    assert "groupId" in rejected({"userId": "u"}, "group").message
    assert "previousId" in rejected({"userId": "u"}, "alias").message


def test_numeric_ids_are_stringified_like_the_sdks_do() -> None:
    record = norm({"userId": 42, "anonymousId": 7.0, "groupId": 3.5}, "group")
    assert (record["userId"], record["anonymousId"], record["groupId"]) == ("42", "7", "3.5")


def test_message_id_is_generated_when_missing() -> None:
    first = norm({"userId": "u"}, "identify")["messageId"]
    second = norm({"userId": "u"}, "identify")["messageId"]
    assert uuid.UUID(first) and first != second


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The device clock runs 1 hour fast: it stamped the event 10 s before sending.
    record = norm(
        {"userId": "u", "event": "x", "timestamp": "2026-11-23T13:00:00Z", "sentAt": "2026-11-23T13:00:10Z"},
        "track",
    )
    assert record["timestamp"] == RECEIVED - 10_000_000
    assert record["originalTimestamp"] == "2026-11-23T13:00:00Z"
    assert record["sentAt"] == "2026-11-23T13:00:10Z"


def test_without_sent_at_the_client_timestamp_is_trusted() -> None:
    record = norm({"userId": "u", "event": "x", "timestamp": "2026-01-02T03:04:05.123456+01:00"}, "track")
    assert record["timestamp"] == parse_time("2026-01-02T02:04:05.123456Z", "t")
    assert record["originalTimestamp"] == "2026-01-02T03:04:05.123456+01:00"


def test_batch_sent_at_applies_to_items_without_their_own() -> None:
    defaults = BatchDefaults(sent_at="2026-11-23T12:00:05Z")
    record = norm(
        {"userId": "u", "event": "x", "timestamp": "2026-11-23T12:00:00Z"}, "track", defaults=defaults
    )
    assert record["timestamp"] == RECEIVED - 5_000_000


def test_batch_context_and_integrations_merge_with_item_winning() -> None:
    defaults = BatchDefaults(
        context={"library": {"name": "batch"}, "ip": "1.1.1.1"}, integrations={"All": True}
    )
    record = norm(
        {"userId": "u", "event": "x", "context": {"ip": "2.2.2.2"}, "integrations": {"Mixpanel": False}},
        "track",
        defaults=defaults,
    )
    assert orjson.loads(record["context"]) == {"library": {"name": "batch"}, "ip": "2.2.2.2"}
    assert orjson.loads(record["integrations"]) == {"All": True, "Mixpanel": False}


def test_unknown_top_level_fields_are_kept_in_extra() -> None:
    record = norm(
        {"userId": "u", "event": "x", "channel": "server", "version": 2, "nested": {"a": [1]}}, "track"
    )
    assert orjson.loads(record["extra"]) == {"channel": "server", "version": 2, "nested": {"a": [1]}}


def test_write_key_in_the_body_is_not_stored() -> None:
    record = norm({"userId": "u", "event": "x", "writeKey": "secret"}, "track")
    assert record["extra"] is None and "secret" not in str(record)


def test_type_from_path_wins_over_body() -> None:
    assert norm({"userId": "u", "type": "page"}, "identify")["type"] == "identify"


def test_segment_delivered_events_keep_their_times() -> None:
    record = norm(
        {
            "type": "track",
            "userId": "u",
            "event": "x",
            "timestamp": "2026-11-23T11:00:00Z",
            "originalTimestamp": "2026-11-23T11:30:00Z",
            "receivedAt": "2026-11-23T11:00:02Z",
            "sentAt": "2026-11-23T11:30:01Z",
        },
        from_segment=True,
    )
    assert record["timestamp"] == parse_time("2026-11-23T11:00:00Z", "t")
    assert record["receivedAt"] == parse_time("2026-11-23T11:00:02Z", "t")
    assert record["originalTimestamp"] == "2026-11-23T11:30:00Z"


def test_deep_nesting_is_a_rejection_not_a_crash() -> None:
    nested: dict = {}
    cursor = nested
    for _ in range(300):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert rejected({"userId": "u", "event": "x", "properties": nested}, "track").code == "invalid_field"


def test_batch_items_without_timestamps_keep_their_order() -> None:
    first = norm({"userId": "u", "event": "x"}, "track", position=0)
    second = norm({"userId": "u", "event": "y"}, "track", position=1)
    assert first["timestamp"] == RECEIVED and second["timestamp"] == RECEIVED + 1
    assert first["receivedAt"] == second["receivedAt"] == RECEIVED


def test_a_clock_far_in_the_future_is_stored_at_received_at_and_counted() -> None:
    from feedhouse import metrics

    received = parse_time("2026-12-01T12:00:00Z", "t")
    hour = 3_600_000_000
    before = metrics.FUTURE_TIMESTAMPS._value.get()
    pinned = normalize(
        {"type": "track", "userId": "u", "event": "e", "timestamp": "9999-12-31T23:59:59Z"},
        event_type=None,
        received_at=received,
        source_id="s",
        max_future_micros=23 * hour,
    )
    assert pinned["timestamp"] == received and pinned["originalTimestamp"] == "9999-12-31T23:59:59Z"
    assert metrics.FUTURE_TIMESTAMPS._value.get() == before + 1
    soon = normalize(
        {"type": "track", "userId": "u", "event": "e", "timestamp": "2026-12-02T10:00:00Z"},
        event_type=None,
        received_at=received,
        source_id="s",
        max_future_micros=23 * hour,
    )
    assert soon["timestamp"] == received + 22 * hour, "within the bound: kept as sent"
    old = normalize(
        {"type": "track", "userId": "u", "event": "e", "timestamp": "1901-01-01T00:00:00Z"},
        event_type=None,
        received_at=received,
        source_id="s",
        max_future_micros=23 * hour,
    )
    assert old["timestamp"] == parse_time("1901-01-01T00:00:00Z", "t"), "very old times are kept"
