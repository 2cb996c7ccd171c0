"""Which touched profiles a pass evaluates: those with an event some definition counts."""

from __future__ import annotations

from typing import cast

from clickhouse_connect.driver.client import Client

from feedhouse.audiences.compile import compile_definitions
from feedhouse.audiences.definitions import AUDIENCE, TRAIT, parse_definition
from feedhouse.audiences.evaluator import Evaluator


def test_only_profiles_with_events_a_definition_counts_are_evaluated() -> None:
    evaluator = Evaluator(cast(Client, object()))  # no query is made
    orders = parse_definition(
        TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
    )
    pages = parse_definition(
        AUDIENCE, {"key": "readers", "when": {"type": "page", "count": {"op": "gte", "value": 3}}}
    )
    evaluator.program = compile_definitions([orders, pages], {})
    seen: dict[str, set[tuple[str, str]]] = {
        "buyer": {("track", "Order Completed")},
        "reader": {("page", "")},
        "clicker": {("track", "Button Clicked"), ("screen", "")},
        "both": {("track", "Signed Up"), ("page", "")},
    }
    assert evaluator.relevant(seen) == {"buyer", "reader", "both"}
    evaluator.program = None
    assert evaluator.relevant(seen) == set()  # nothing defined: nothing to evaluate
