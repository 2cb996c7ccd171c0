"""Identity rules 5-8 on the pure state functions."""

from __future__ import annotations

import itertools

from feedhouse.streams.profile_state import (
    IdState,
    apply_group,
    apply_identify,
    audience_membership,
    snapshot,
)
from feedhouse.streams.state_agent import StateProcessor


def test_latest_trait_wins_by_event_time_not_arrival() -> None:
    state = IdState()
    assert apply_identify(state, {"plan": "pro", "email": "new@x.io"}, (20, "b"), None)
    assert apply_identify(state, {"plan": "free", "name": "Ada"}, (10, "a"), None)  # late, older
    assert snapshot(state)["traits"] == {"plan": "pro", "email": "new@x.io", "name": "Ada"}
    assert snapshot(state)["traitTimes"] == {"plan": 20, "email": 20, "name": 10}


def test_redelivered_identify_changes_nothing() -> None:
    state = IdState()
    apply_identify(state, {"plan": "pro"}, (20, "b"), None)
    assert not apply_identify(state, {"plan": "pro"}, (20, "b"), None)


def test_latest_group_call_wins_by_event_time() -> None:
    state = IdState()
    assert apply_group(state, "g2", (20, "b"))
    assert not apply_group(state, "g1", (10, "a"))  # an older group call arriving later
    assert snapshot(state)["groupId"] == "g2"


def test_audience_entered_then_exited_in_any_arrival_order() -> None:
    events = [({"vip": True}, (10, "a")), ({"vip": False}, (20, "b")), ({"vip": True}, (30, "c"))]
    for order in itertools.permutations(events):
        state = IdState()
        for traits, stamp in order:
            apply_identify(state, traits, stamp, "vip")
        assert snapshot(state)["audiences"]["vip"] == {
            "member": True,
            "time": 30,
            "enteredAt": 30,
            "exitedAt": 20,
        }


def test_audience_exit() -> None:
    history = [(10, "a", True), (20, "b", False)]
    assert audience_membership(history) == {"member": False, "time": 20, "enteredAt": 10, "exitedAt": 20}


def test_state_round_trips_through_json() -> None:
    state = IdState()
    apply_identify(state, {"vip": True, "n": 1}, (10, "a"), "vip")
    apply_group(state, "g", (11, "b"))
    assert IdState.from_json(state.to_json()) == state


def test_processor_publishes_on_change_and_on_replay_only() -> None:
    processor = StateProcessor({}, {})
    identify = {
        "kind": "identify",
        "id": "u1",
        "target": None,
        "traits": '{"email":"a@b.c"}',
        "audience": None,
        "timestamp": 5,
        "messageId": "m1",
    }
    kind, record = processor.apply(identify, version=7)  # type: ignore[misc]
    assert kind == "id" and record["version"] == 7 and record["traits"] == '{"email":"a@b.c"}'
    assert processor.apply(identify, version=8) is None  # redelivered later: nothing new
    assert processor.apply(identify, version=7) is not None  # replayed after a restart: publish again


def test_processor_keeps_group_traits_per_group() -> None:
    groups: dict = {}
    processor = StateProcessor({}, groups)
    command = {
        "kind": "group_traits",
        "id": "g1",
        "target": None,
        "traits": '{"name":"Acme"}',
        "audience": None,
        "timestamp": 5,
        "messageId": "m1",
    }
    kind, record = processor.apply(command, version=0)  # type: ignore[misc]
    assert kind == "group" and record["groupId"] == "g1" and "g1" in groups


def test_forget_removes_the_ids_state() -> None:
    from feedhouse.streams.overlay import TableOverlay

    table: dict[str, object] = {}
    ids = TableOverlay(table)
    processor = StateProcessor(ids, {})
    command = {
        "kind": "identify",
        "id": "ann",
        "traits": '{"email": "a@x"}',
        "audience": None,
        "timestamp": 1,
        "messageId": "m1",
        "target": None,
    }
    assert processor.apply(command, 1) is not None
    ids.flush()
    assert "ann" in table
    assert processor.apply({"kind": "forget", "id": "ann", "target": None}, 2) is None
    assert ids.get("ann") is None
    ids.flush()
    assert "ann" not in table
