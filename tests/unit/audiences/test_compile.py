"""Definitions become SQL made of fixed fragments: every value of a definition is a bound parameter."""

from __future__ import annotations

import re

import pytest

from feedhouse.audiences.compile import UnknownDefinition, compile_definitions
from feedhouse.audiences.definitions import AUDIENCE, TRAIT, Definition, parse_definition
from feedhouse.audiences.queries import evaluation_sql

HOSTILE = "x' OR 1=1) --; DROP TABLE events"


def definitions() -> list[Definition]:
    trait = parse_definition(
        TRAIT,
        {
            "key": "spend",
            "compute": {
                "op": "sum",
                "event": HOSTILE,
                "property": "order.total",
                "within_days": 30,
                "where": [{"property": "note", "op": "contains", "value": HOSTILE}],
            },
        },
    )
    audience = parse_definition(
        AUDIENCE,
        {
            "key": "big_spenders",
            "when": {
                "any": [
                    {"trait": "spend", "op": "gt", "value": 100},
                    {"trait": HOSTILE, "op": "eq", "value": HOSTILE},
                    {"event": "Order Completed", "count": {"op": "gte", "value": 3}, "within_days": 7},
                ]
            },
        },
        computed_traits=frozenset({"spend"}),
    )
    return [trait, audience]


def test_no_value_of_a_definition_appears_in_the_sql() -> None:
    trait, audience = definitions()
    program = compile_definitions([trait, audience], {"spend": trait})
    for everything in (False, True):
        sql = evaluation_sql(program, everything=everything)
        for value in (HOSTILE, "order", "total", "note", "Order Completed", "100", "30"):
            assert value not in sql, value
    bound = [
        v for value in program.parameters.values() for v in (value if isinstance(value, list) else [value])
    ]
    assert HOSTILE in bound
    assert {"order", "total", "note", "Order Completed"} <= set(bound)
    # Every placeholder in the SQL is either bound here or bound per run (the clock; the scope
    # is a table).
    placeholders = set(re.findall(r"\{(\w+):", evaluation_sql(program, everything=False)))
    assert placeholders == set(program.parameters) | {"now_us"}


def test_the_program_knows_what_to_read_and_which_windows_expire() -> None:
    trait, audience = definitions()
    program = compile_definitions([trait, audience], {"spend": trait})
    assert [key for key, _ in program.outputs] == ["spend", "big_spenders"]
    assert program.windows == (7, 30)
    assert program.uses_properties and not program.uses_traits
    # The identify trait test reads id states; the computed one is computed inline from events.
    assert len(program.state_aggregates) == 1
    # The audience reuses the trait's aggregates instead of computing them twice.
    alone = compile_definitions([audience], {"spend": trait})
    assert len(alone.event_aggregates) == len(program.event_aggregates)


def test_identify_and_group_selectors_read_traits() -> None:
    trait = parse_definition(
        TRAIT, {"key": "last_plan", "compute": {"op": "last", "type": "identify", "property": "plan"}}
    )
    program = compile_definitions([trait], {})
    assert program.uses_traits and not program.uses_properties


def test_an_audience_test_computes_the_tested_audience_inline() -> None:
    buyers = parse_definition(
        AUDIENCE, {"key": "buyers", "when": {"event": "Order Completed", "within_days": 7}}
    )
    lapsed = parse_definition(
        AUDIENCE,
        {"key": "lapsed", "when": {"all": [{"event": "Order Completed"}, {"not": {"audience": "buyers"}}]}},
        audiences=frozenset({"buyers"}),
    )
    known = {"buyers": buyers, "lapsed": lapsed}
    alone = compile_definitions([lapsed], known)
    # The tested audience's events and window are part of the tester's program ...
    assert alone.windows == (7,) and alone.events == {"Order Completed"}
    # ... and both together share the aggregates (the same count is not computed twice).
    both = compile_definitions([buyers, lapsed], known)
    assert len(both.event_aggregates) == len(alone.event_aggregates) == 2
    with pytest.raises(UnknownDefinition):
        compile_definitions([lapsed], {"lapsed": lapsed})  # buyers is gone


def test_each_output_knows_the_kinds_of_events_it_reads() -> None:
    orders = parse_definition(
        TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
    )
    readers = parse_definition(AUDIENCE, {"key": "readers", "when": {"type": "page"}})
    abandoners = parse_definition(
        AUDIENCE,
        {
            "key": "abandoners",
            "when": {
                "all": [{"event": "Checkout Started"}, {"not": {"trait": "orders", "op": "gte", "value": 1}}]
            },
        },
        computed_traits=frozenset({"orders"}),
    )
    pro = parse_definition(AUDIENCE, {"key": "pro", "when": {"trait": "plan", "op": "eq", "value": "pro"}})
    known = {"orders": orders, "readers": readers, "abandoners": abandoners, "pro": pro}
    program = compile_definitions([orders, readers, abandoners, pro], known)
    assert program.kinds == (("page", ""), ("track", "Checkout Started"), ("track", "Order Completed"))
    page, checkout, order = 1, 2, 4
    # The audience testing the computed trait reads the trait's events too; an identify-trait
    # test reads no events at all.
    assert program.output_kinds == (order, page, checkout | order, 0)
    assert program.kinds_of([("track", "Order Completed"), ("track", "Signed Up")]) == order
    assert program.kinds_of([("page", "Home")]) == page  # a type counts every event of it
    assert program.kinds_of([("screen", "")]) == 0
    # The row mask's SQL names kinds by bound parameters only.
    assert "Order Completed" not in program.row_kinds and program.row_kinds.count("if(") == 3
