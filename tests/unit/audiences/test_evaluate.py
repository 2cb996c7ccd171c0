"""Which outputs a pass evaluates for a profile touched by events alone (``evaluate.relevance``)."""

from __future__ import annotations

from feedhouse.audiences.compile import Program, compile_definitions
from feedhouse.audiences.definitions import AUDIENCE, TRAIT, parse_definition
from feedhouse.audiences.evaluate import EVERY_KIND, Scope, relevance


def program() -> Program:
    orders = parse_definition(
        TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
    )
    abandoners = parse_definition(
        AUDIENCE,
        {
            "key": "abandoners",
            "when": {"all": [{"event": "Checkout Started"}, {"not": {"event": "Order Completed"}}]},
        },
    )
    last_page = parse_definition(
        TRAIT, {"key": "last_page", "compute": {"op": "last", "type": "page", "property": "path"}}
    )
    return compile_definitions([orders, abandoners, last_page], {})


def scope(owner_of: dict[str, str], former: frozenset[str] = frozenset()) -> Scope:
    alive = tuple(sorted(set(owner_of.values())))
    return Scope(alive, alive, alive, alive, owner_of, former)


def test_a_profile_touched_by_events_alone_is_evaluated_for_what_they_count() -> None:
    compiled = program()
    page, checkout, order = (1 << compiled.kinds.index(kind) for kind in compiled.kinds)
    found = relevance(
        compiled,
        scope({"reader": "reader", "buyer-anon": "buyer", "buyer": "buyer"}),
        {"reader": {("page", "")}, "buyer-anon": {("track", "Order Completed")}},
        whole=[],
    )
    assert found.outputs == {"reader": frozenset({2}), "buyer": frozenset({0, 1})}
    # The abandoners audience also reads checkouts: an order brings the profile's checkouts.
    assert found.masks == {"reader": page, "buyer": order | checkout}


def test_identity_changes_and_moved_ids_keep_a_profile_whole() -> None:
    compiled = program()
    owner_of = {"a": "p", "b": "q", "c": "r", "c-old": "r"}
    found = relevance(
        compiled,
        scope(owner_of, former=frozenset({"q"})),
        {"a": {("page", "")}, "b": {("page", "")}, "c": {("page", "")}},
        whole=["c-old"],  # an identity record for another id of r
    )
    assert found.outputs == {"p": frozenset({2})}
    assert "q" not in found.masks and "r" not in found.masks  # left whole: EVERY_KIND in the scope
    assert EVERY_KIND == (1 << 64) - 1


def test_an_event_no_live_output_counts_evaluates_nothing() -> None:
    found = relevance(program(), scope({"x": "x"}), {"x": {("screen", "")}}, whole=[])
    assert found.outputs == {"x": frozenset()} and found.masks == {"x": 0}
