"""Merging a profile from its ids' state, and the JSON shapes of the read API."""

from __future__ import annotations

import dataclasses

import orjson

from feedhouse.read.model import classify_ids, event_json, iso, merge_states
from feedhouse.read.queries.profiles import IdStateRow, ProfileRows
from feedhouse.read.queries.timelines import EventRow


def state(
    identifier: str,
    traits: dict[str, object] | None = None,
    times: dict[str, int] | None = None,
    **fields: object,
) -> IdStateRow:
    return IdStateRow(
        id=identifier,
        traits=orjson.dumps(traits or {}).decode(),
        trait_times=orjson.dumps(times or {}).decode(),
        group_id=str(fields.get("group_id", "")),
        group_time=fields.get("group_time"),  # type: ignore[arg-type]
        audiences=orjson.dumps(fields.get("audiences", {})).decode(),
    )


def test_iso_times_are_utc_with_microseconds() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000000Z"
    assert iso(1_767_225_600_123_456) == "2026-01-01T00:00:00.123456Z"
    assert iso(-1) == "1969-12-31T23:59:59.999999Z"
    assert iso(None) is None


def test_traits_newest_event_time_wins_ties_to_the_larger_id() -> None:
    merged = merge_states(
        [
            state("a", {"plan": "pro", "email": "x@a"}, {"plan": 10, "email": 5}),
            state("b", {"plan": "free", "seats": 3}, {"plan": 20, "seats": 1}),
            state("c", {"email": "x@c"}, {"email": 5}),  # same time as a's email: larger id wins
            state("d", {"legacy": True}, {}),  # no time: 0, still present
        ]
    )
    assert merged.traits == {"email": "x@c", "legacy": True, "plan": "free", "seats": 3}


def test_group_and_audiences_newest_event_time_wins() -> None:
    merged = merge_states(
        [
            state(
                "a",
                group_id="g1",
                group_time=30,
                audiences={"vip": {"member": True, "time": 5, "enteredAt": 5, "exitedAt": None}},
            ),
            state(
                "b",
                group_id="g2",
                group_time=20,
                audiences={"vip": {"member": False, "time": 9, "enteredAt": 1, "exitedAt": 9}},
            ),
            state(
                "c",
                group_id="",
                group_time=None,
                audiences={"new": {"member": True, "time": 1, "enteredAt": 1}},
            ),
        ]
    )
    assert merged.group_id == "g1"
    assert merged.audiences == {
        "new": {"member": True, "enteredAt": iso(1), "exitedAt": None, "computedBy": "engage"},
        "vip": {"member": False, "enteredAt": iso(1), "exitedAt": iso(9), "computedBy": "engage"},
    }
    assert merge_states([]).group_id is None
    assert merge_states([state("x", group_id="g", group_time=None)]).group_id == "g"


def test_unparsable_state_is_ignored_not_fatal() -> None:
    broken = IdStateRow("a", "{not json", "[]", "", None, "null")
    assert merge_states([broken]).traits == {}


def rows(users: set[str], anonymous: set[str], previous: set[str]) -> ProfileRows:
    return ProfileRows(0, None, None, frozenset(users), frozenset(anonymous), frozenset(previous), (), {})


def test_ids_are_classified_by_how_events_used_them() -> None:
    seen = rows({"u1", "", "anonymous", "both"}, {"a1", "both", "anon-prev"}, {"old-user", "anon-prev"})
    users, anonymous = classify_ids(["u1", "a1", "both", "old-user", "anon-prev", "unseen"], seen)
    assert users == ["both", "old-user", "u1"]
    assert anonymous == ["a1", "anon-prev"]


def test_event_json_is_segment_camel_case_with_nulls_for_absent_fields() -> None:
    row = EventRow(
        "m1", "track", "", "anon", "", "", "Paid", "", "", 1_000_000, 2_000_000, "2026-01-01T00:00:00Z", "",
        '{"revenue":1}', "", '{"ip":"1.2.3.4"}', "", '{"channel":"server"}', "anon",
    )  # fmt: skip
    assert event_json(row) == {
        "messageId": "m1",
        "type": "track",
        "userId": None,
        "anonymousId": "anon",
        "event": "Paid",
        "name": None,
        "category": None,
        "groupId": None,
        "previousId": None,
        "properties": {"revenue": 1},
        "traits": None,
        "context": {"ip": "1.2.3.4"},
        "integrations": None,
        "timestamp": "1970-01-01T00:00:01.000000Z",
        "receivedAt": "1970-01-01T00:00:02.000000Z",
        "originalTimestamp": "2026-01-01T00:00:00Z",
        "sentAt": None,
        "extra": {"channel": "server"},
    }
    assert "extra" not in event_json(dataclasses.replace(row, extra=""))
    assert event_json(dataclasses.replace(row, properties="{broken"))["properties"] == "{broken"
