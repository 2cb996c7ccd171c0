"""Definitions in words, from the canonical bodies ``parse_definition`` stores."""

from __future__ import annotations

from typing import Any

from feedhouse.app.describe import describe, describe_compute, describe_condition
from feedhouse.audiences.definitions import AUDIENCE, TRAIT, parse_definition


def canonical(kind: str, body: dict[str, Any], traits: frozenset[str] = frozenset()) -> dict[str, Any]:
    return parse_definition(kind, body, computed_traits=traits).body


def test_the_documented_audience_reads_as_a_sentence() -> None:
    body = canonical(
        AUDIENCE,
        {
            "key": "repeat_buyers",
            "when": {
                "all": [
                    {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
                    {"not": {"trait": "plan", "op": "eq", "value": "free"}},
                    {
                        "any": [
                            {"trait": "orders_30d", "op": "gt", "value": 3},
                            {
                                "type": "page",
                                "where": [{"property": "path", "op": "contains", "value": "/pricing"}],
                            },
                        ]
                    },
                ]
            },
        },
        frozenset({"orders_30d"}),
    )
    assert describe(body) == (
        'did "Order Completed" at least 2 times in the last 30 days and not (plan = "free")'
        ' and (orders_30d (computed) > 3 or did any page call where path contains "/pricing")'
    )


def test_single_tests_exists_and_counts() -> None:
    assert describe_condition({"trait": "email", "op": "exists", "computed": False}) == "email exists"
    assert describe_condition({"trait": "email", "op": "exists", "value": False}) == "email is absent"
    assert describe_condition({"event": "Signed Up", "count": {"op": "gte", "value": 1}}) == 'did "Signed Up"'
    assert (
        describe_condition({"event": "Signed Up", "within_days": 1, "count": {"op": "eq", "value": 1}})
        == 'did "Signed Up" exactly 1 time in the last day'
    )
    assert describe_condition({"all": [{"trait": "a", "op": "lte", "value": 2}]}) == "a ≤ 2"
    # Names keep their quotes unambiguous; unexpected shapes render as JSON instead of failing.
    assert describe_condition({"event": 'say "hi"'}) == 'did "say \\"hi\\""'
    assert describe_condition({"future": 1}) == '{"future":1}'
    assert describe_condition(None) == "null"


def test_computed_traits_read_as_formulas() -> None:
    count = canonical(TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}})
    assert describe(count) == 'count of "Order Completed"'
    total = canonical(
        TRAIT,
        {
            "key": "eur_revenue",
            "compute": {
                "op": "sum",
                "event": "Order Completed",
                "property": "order.total",
                "within_days": 30,
                "where": [{"property": "currency", "op": "eq", "value": "EUR"}],
            },
        },
    )
    assert (
        describe(total)
        == 'sum of order.total over "Order Completed" in the last 30 days where currency = "EUR"'
    )
    assert (
        describe_compute({"op": "unique", "type": "page", "property": "path", "limit": 5})
        == "unique values of path (at most 5) over any page call"
    )


def test_an_audience_test_reads_as_membership() -> None:
    body = parse_definition(
        AUDIENCE,
        {"key": "lapsed", "when": {"all": [{"event": "Order Completed"}, {"not": {"audience": "buyers"}}]}},
        audiences=frozenset({"buyers"}),
    ).body
    assert describe(body) == 'did "Order Completed" and not (in audience buyers)'
