"""Identity rules 3, 4 and 9 on the pure graph functions (event-time replay)."""

from __future__ import annotations

import itertools

import pytest

from feedhouse.streams import graph_agent
from feedhouse.streams.graph import ALIAS, CLAIM, FORGET, Edge, Node, component, resolve
from feedhouse.streams.graph_agent import GraphProcessor


def claim(t: int, anonymous: str, user: str) -> Edge:
    return (t, f"m{t}", CLAIM, anonymous, user)


def alias(t: int, previous: str, user: str) -> Edge:
    return (t, f"m{t}", ALIAS, previous, user)


def test_anonymous_history_joins_the_user() -> None:
    assert resolve([claim(1, "a1", "u1")]).profiles == {"a1": "u1", "u1": "u1"}


def test_second_user_on_a_shared_device_is_a_conflict_not_a_merge() -> None:
    result = resolve([claim(1, "a1", "u1"), claim(2, "a1", "u2")])
    assert result.profiles == {"a1": "u1", "u1": "u1", "u2": "u2"}
    assert result.conflicts == {"a1": ("u2",)}


def test_alias_chain_resolves_to_the_last_target() -> None:
    result = resolve([alias(1, "A", "B"), alias(2, "B", "C")])
    assert result.profiles == {"A": "C", "B": "C", "C": "C"}


def test_alias_cycle_and_repeat_are_no_ops() -> None:
    edges = [alias(1, "A", "B"), alias(2, "B", "C"), alias(3, "C", "A"), alias(4, "A", "B")]
    assert resolve(edges).profiles == {"A": "C", "B": "C", "C": "C"}


def test_alias_merges_the_whole_profile_including_linked_devices() -> None:
    edges = [claim(1, "dev1", "old"), claim(2, "dev2", "new"), alias(3, "old", "new")]
    assert resolve(edges).profiles == {"dev1": "new", "dev2": "new", "old": "new", "new": "new"}


def test_claim_after_merge_is_not_a_conflict() -> None:
    edges = [claim(1, "a1", "u1"), alias(2, "u1", "u2"), claim(3, "a1", "u2")]
    result = resolve(edges)
    assert result.profiles["a1"] == "u2" and result.conflicts == {}


def test_an_aliased_previous_id_cannot_be_claimed_by_someone_else() -> None:
    result = resolve([alias(1, "a1", "u1"), claim(2, "a1", "u2")])
    assert result.profiles["a1"] == "u1" and result.conflicts == {"a1": ("u2",)}


def test_outcome_does_not_depend_on_arrival_order() -> None:
    edges = [
        claim(1, "a1", "u1"),
        claim(2, "a1", "u2"),
        alias(3, "A", "B"),
        alias(4, "B", "C"),
        alias(5, "C", "A"),
        claim(6, "a2", "B"),
        alias(7, "u2", "u1"),
    ]
    expected = resolve(edges)
    for order in itertools.permutations(edges):
        assert resolve(order) == expected


def test_processor_publishes_only_changes_and_is_idempotent() -> None:
    table: dict = {}
    graph = GraphProcessor(table)
    command = {"kind": "claim", "id": "a1", "target": "u1", "timestamp": 10, "messageId": "m1"}
    first = graph.apply(command, version=0)
    assert {(r["id"], r["profileId"], r["version"]) for r in first} == {("a1", "u1", 0), ("u1", "u1", 0)}
    assert graph.apply(command, version=1) == []  # redelivery (rule 8)
    # A replay of an offset already applied (restart) publishes the component again.
    assert {r["id"] for r in graph.apply(command, version=0)} == {"a1", "u1"}


def test_processor_late_earlier_claim_takes_the_device() -> None:
    graph = GraphProcessor({})
    graph.apply({"kind": "claim", "id": "a1", "target": "u2", "timestamp": 20, "messageId": "m2"}, 0)
    moved = graph.apply({"kind": "claim", "id": "a1", "target": "u1", "timestamp": 10, "messageId": "m1"}, 1)
    by_id = {r["id"]: r for r in moved}
    assert by_id["a1"]["profileId"] == "u1" and by_id["a1"]["conflicts"] == ["u2"]


def test_processor_ignores_self_links() -> None:
    assert (
        GraphProcessor({}).apply(
            {"kind": "alias", "id": "u", "target": "u", "timestamp": 1, "messageId": "m"}, 0
        )
        == []
    )


def test_node_keeps_the_earliest_occurrence_of_an_edge() -> None:
    node = Node()
    assert node.add(claim(5, "a", "u"))
    assert not node.add((9, "m9", CLAIM, "a", "u"))
    assert node.add((3, "m3", CLAIM, "a", "u"))
    assert list(node.edges.values()) == [(3, "m3", CLAIM, "a", "u")]
    assert Node.from_json(node.to_json()) == node


def test_component_walks_refused_claims_too() -> None:
    nodes = {
        "a1": Node(edges={"x": claim(1, "a1", "u1"), "y": claim(2, "a1", "u2")}),
        "u1": Node(edges={"x": claim(1, "a1", "u1")}),
        "u2": Node(edges={"y": claim(2, "a1", "u2")}),
    }
    found, edges = component(["u2"], lambda key: nodes.get(key, Node()))
    assert set(found) == {"a1", "u1", "u2"} and len(edges) == 2


def test_forgetting_a_deleted_person_removes_their_nodes_and_their_edges_elsewhere() -> None:
    nodes: dict[str, object] = {}
    graph = GraphProcessor(nodes)
    command = {"kind": CLAIM, "timestamp": 1, "messageId": "m1", "id": "shared-device", "target": "ann"}
    graph.apply(command, 1)
    refused = {"kind": CLAIM, "timestamp": 2, "messageId": "m2", "id": "shared-device", "target": "bob"}
    graph.apply(refused, 2)
    assert Node.from_json(nodes["shared-device"]).conflicts == ("bob",)  # type: ignore[arg-type]
    # Ann is deleted: both of her ids leave the graph; Bob keeps his node, without Ann's device.
    records = graph.apply({"kind": FORGET, "id": "ann", "target": None}, 3)
    records += graph.apply({"kind": FORGET, "id": "shared-device", "target": None}, 4)
    assert "ann" not in nodes and "shared-device" not in nodes
    assert Node.from_json(nodes["bob"]).edges == {}  # type: ignore[arg-type]
    assert graph.apply({"kind": FORGET, "id": "nobody", "target": None}, 5) == []
    # Bob on that device again: the device is nobody's now, so it joins Bob.
    again = {"kind": CLAIM, "timestamp": 9, "messageId": "m9", "id": "shared-device", "target": "bob"}
    mapped = {r["id"]: r["profileId"] for r in graph.apply(again, 6)}
    assert mapped["shared-device"] == "bob", mapped


def test_a_batch_forgetting_a_person_publishes_nothing_of_them() -> None:
    nodes: dict[str, object] = {}
    graph = GraphProcessor(nodes)
    graph.apply({"kind": CLAIM, "timestamp": 1, "messageId": "m1", "id": "ann-phone", "target": "ann-old"}, 1)
    graph.apply({"kind": ALIAS, "timestamp": 2, "messageId": "m2", "id": "ann-old", "target": "ann"}, 2)
    forget = [{"kind": FORGET, "id": key, "target": None} for key in ("ann", "ann-old", "ann-phone")]
    # One at a time, forgetting her user id republishes her other ids (a component without it)...
    alone = GraphProcessor(dict(nodes))
    assert {r["id"] for r in alone.apply(forget[0], 3)} == {"ann-old", "ann-phone"}
    # ...in one batch, as the executor sends them, nothing of her is published.
    assert graph.apply_batch(forget, 3) == ([], [])
    assert not {"ann-phone", "ann-old", "ann"} & set(nodes)


def members(records: list[dict]) -> dict[str, list[str]]:
    return {r["profileId"]: r["ids"] for r in records}


def command(edge: Edge) -> dict[str, object]:
    timestamp, message_id, kind, a, b = edge
    return {"kind": kind, "id": a, "target": b, "timestamp": timestamp, "messageId": message_id}


def test_each_changed_profile_is_published_with_all_its_ids() -> None:
    graph = GraphProcessor({})
    graph.apply({"kind": CLAIM, "timestamp": 1, "messageId": "m1", "id": "a1", "target": "u1"}, 1)
    assert members(graph.take_memberships()) == {"u1": ["a1", "u1"]}
    assert graph.take_memberships() == [], "taken once"
    graph.apply({"kind": CLAIM, "timestamp": 2, "messageId": "m2", "id": "a2", "target": "u2"}, 2)
    graph.take_memberships()
    # u2 is aliased to u1: u1 gains u2's ids, u2 is no longer a profile of its own.
    graph.apply(command(alias(3, "u2", "u1")), 3)
    published = graph.take_memberships()
    assert members(published) == {"u1": ["a1", "a2", "u1", "u2"], "u2": []}, published
    assert {r["version"] for r in published} == {3}
    # A redelivered command changes nothing and publishes nothing; a replayed one (restart) again.
    assert graph.apply(command(alias(3, "u2", "u1")), 4) == [] and graph.take_memberships() == []
    graph.apply(command(alias(3, "u2", "u1")), 3)
    assert members(graph.take_memberships()) == {"u1": ["a1", "a2", "u1", "u2"]}


def test_a_device_taken_by_an_earlier_claim_leaves_its_old_profile() -> None:
    graph = GraphProcessor({})
    graph.apply({"kind": CLAIM, "timestamp": 20, "messageId": "m2", "id": "a1", "target": "u2"}, 0)
    graph.take_memberships()
    graph.apply({"kind": CLAIM, "timestamp": 10, "messageId": "m1", "id": "a1", "target": "u1"}, 1)
    assert members(graph.take_memberships()) == {"u1": ["a1", "u1"], "u2": ["u2"]}


def test_a_batch_publishes_each_profile_once_and_a_forgotten_one_never() -> None:
    graph = GraphProcessor({})
    batch = [
        {"kind": CLAIM, "timestamp": 1, "messageId": "m1", "id": "a1", "target": "ann"},
        {"kind": CLAIM, "timestamp": 2, "messageId": "m2", "id": "a2", "target": "ann"},
        {"kind": CLAIM, "timestamp": 3, "messageId": "m3", "id": "b1", "target": "bob"},
    ]
    output = graph.apply_batch(batch, 7)
    assert sorted((r["profileId"], r["ids"]) for r in output.memberships) == [
        ("ann", ["a1", "a2", "ann"]),
        ("bob", ["b1", "bob"]),
    ]
    forget = [{"kind": FORGET, "id": key, "target": None} for key in ("ann", "a1", "a2")]
    assert graph.apply_batch(forget, 8) == ([], [])


def test_a_profile_with_more_ids_than_a_record_holds_is_published_as_overflowing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(graph_agent, "MEMBERS_LIMIT", 2)
    graph = GraphProcessor({})
    graph.apply({"kind": CLAIM, "timestamp": 1, "messageId": "m1", "id": "a1", "target": "bot"}, 1)
    assert [(r["ids"], r["overflow"]) for r in graph.take_memberships()] == [(["a1", "bot"], False)]
    graph.apply({"kind": CLAIM, "timestamp": 2, "messageId": "m2", "id": "a2", "target": "bot"}, 2)
    assert [(r["ids"], r["overflow"]) for r in graph.take_memberships()] == [([], True)]
