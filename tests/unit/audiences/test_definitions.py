"""Definition validation: what is accepted, what is refused, and the path every refusal names."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from feedhouse.audiences.definitions import (
    AUDIENCE,
    MAX_CONDITION_DEPTH,
    TRAIT,
    AllOf,
    AnyOf,
    AudienceTest,
    DefinitionError,
    EventTest,
    Not,
    TraitTest,
    check_references,
    fingerprint,
    parse_definition,
)


def audience(when: object, **extra: Any) -> dict[str, Any]:
    return {"key": "repeat_buyers", "name": "Repeat Buyers", "when": when, **extra}


def refused(kind: str, body: object, **kwargs: Any) -> str:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(kind, body, **kwargs)
    return str(caught.value)


def test_the_issue_example_names_the_path_of_the_bad_operator() -> None:
    body = audience(
        {"all": [{"trait": "plan", "op": "eq", "value": "pro"}, {"trait": "x", "op": "gte ", "value": 2}]}
    )
    assert refused(AUDIENCE, body).startswith("when.all[1].op: unknown operator 'gte '")


def test_a_computed_trait_with_every_part() -> None:
    definition = parse_definition(
        TRAIT,
        {
            "key": "orders_30d",
            "name": "Orders (30 days)",
            "compute": {
                "op": "sum",
                "event": "Order Completed",
                "property": "order.total",
                "within_days": 30,
                "where": [
                    {"property": "currency", "op": "eq", "value": "EUR"},
                    {"property": "coupon", "op": "exists"},
                ],
            },
        },
    )
    assert definition.compute is not None
    assert definition.compute.op == "sum"
    assert definition.compute.property == ("order", "total")
    assert definition.compute.selector.within_days == 30
    assert [f.op for f in definition.compute.selector.where] == ["eq", "exists"]
    assert definition.body["compute"]["where"][1] == {"property": "coupon", "op": "exists"}


def test_an_audience_tree_and_its_canonical_body() -> None:
    definition = parse_definition(
        AUDIENCE,
        audience(
            {
                "all": [
                    {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
                    {"not": {"trait": "plan", "op": "eq", "value": "free"}},
                    {
                        "any": [
                            {
                                "type": "page",
                                "where": [{"property": "path", "op": "contains", "value": "/pricing"}],
                            }
                        ]
                    },
                    {"trait": "orders_30d", "op": "gt", "value": 1},
                ]
            }
        ),
        computed_traits=frozenset({"orders_30d"}),
    )
    assert isinstance(definition.when, AllOf)
    first, second, third, fourth = definition.when.items
    assert isinstance(third, AnyOf) and isinstance(third.items[0], EventTest)
    assert isinstance(first, EventTest) and first.count_op == "gte" and first.count_value == 2
    assert isinstance(second, Not) and isinstance(second.item, TraitTest) and not second.item.computed
    assert isinstance(fourth, TraitTest) and fourth.computed
    assert definition.traits_used() == {"orders_30d"}
    # An event test without a count means "at least once"; trait tests say which kind they test.
    assert definition.body["when"]["all"][2]["any"][0]["count"] == {"op": "gte", "value": 1}
    assert definition.body["when"]["all"][1]["not"]["computed"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "Repeat Buyers", "when": {"event": "x"}}, "key: must be snake_case"),
        ({"key": "1st", "when": {"event": "x"}}, "key: must be snake_case"),
        ({"key": "ok", "when": {"event": "x"}, "colour": "red"}, "colour: unknown field"),
        ({"key": "ok"}, "when: required"),
        ({"key": "ok", "when": []}, "when: must be a condition object"),
        ({"key": "ok", "when": {"all": []}}, "when.all: must be a non-empty list"),
        (
            {"key": "ok", "when": {"all": [{"event": "x", "type": "page"}]}},
            "when.all[0]: has both 'event' and 'type'",
        ),
        (
            {"key": "ok", "when": {"event": "x", "within_days": 0}},
            "when.within_days: must be an integer from 1",
        ),
        ({"key": "ok", "when": {"event": "x", "within_days": True}}, "when.within_days: must be an integer"),
        (
            {"key": "ok", "when": {"event": "x", "count": {"op": "most", "value": 1}}},
            "when.count.op: unknown operator",
        ),
        (
            {"key": "ok", "when": {"event": "x", "count": {"op": "gt", "value": -1}}},
            "when.count.value: must be an",
        ),
        ({"key": "ok", "when": {"type": "click"}}, "when.type: unknown type 'click'"),
        ({"key": "ok", "when": {"trait": "plan", "op": "eq"}}, "when.value: required"),
        (
            {"key": "ok", "when": {"trait": "plan", "op": "gt", "value": True}},
            "when.value: 'gt' compares numbers",
        ),
        (
            {"key": "ok", "when": {"trait": "plan", "op": "contains", "value": 3}},
            "when.value: 'contains' needs",
        ),
        (
            {"key": "ok", "when": {"trait": "plan", "op": "eq", "value": [1]}},
            "when.value: must be a string, a number",
        ),
        (
            {"key": "ok", "when": {"trait": "plan", "op": "eq", "value": float("inf")}},
            "when.value: must be a finite",
        ),
        (
            {"key": "ok", "when": {"trait": "plan", "op": "exists", "value": "yes"}},
            "when.value: 'exists' takes",
        ),
        ({"key": "ok", "when": {"not": {"all": [{"trait": "a"}]}}}, "when.not.all[0].op: required"),
        ({"key": "ok", "when": {"trait": "a", "event": "b"}}, "when: has both 'trait' and 'event'"),
        ({"key": "ok", "when": {"trait": "vip", "op": "exists"}}, "when.trait: 'vip' is an audience"),
        (
            {"key": "ok", "when": {"trait": "x", "op": "exists", "computed": True}},
            "when.trait: there is no computed",
        ),
    ],
)
def test_audiences_are_refused_with_the_offending_path(body: dict[str, Any], message: str) -> None:
    assert refused(AUDIENCE, body, audiences=frozenset({"vip"})).startswith(message)


@pytest.mark.parametrize(
    ("compute", "message"),
    [
        ({"op": "median", "event": "x", "property": "p"}, "compute.op: unknown operator 'median'"),
        ({"op": "sum", "event": "x"}, "compute.property: required for 'sum'"),
        ({"op": "sum", "event": "x", "property": "a..b"}, "compute.property: must be a property path"),
        ({"op": "sum", "event": "x", "property": "a b"}, "compute.property: must be a property path"),
        (
            {"op": "sum", "event": "x", "property": "a'); DROP TABLE events; --"},
            "compute.property: must be a",
        ),
        ({"op": "sum", "event": "x", "property": ".".join("abcdefghij")}, "compute.property: must be a"),
        ({"op": "count", "event": ""}, "compute.event: must not be empty"),
        ({"op": "count", "event": "x" * 2000}, "compute.event: at most 1024 characters"),
        ({"op": "count", "event": "x", "limit": 5}, "compute.limit: only 'unique' takes a limit"),
        ({"op": "unique", "event": "x", "property": "p", "limit": 1000}, "compute.limit: must be an integer"),
        ({"op": "count", "event": "x", "where": {"property": "p"}}, "compute.where: must be a list"),
        (
            {"op": "count", "event": "x", "where": [{"property": "p", "op": "like", "value": 1}]},
            "compute.where[0].op",
        ),
        (
            {"op": "count", "event": "x", "where": [{"op": "eq", "value": 1}]},
            "compute.where[0].property: required",
        ),
    ],
)
def test_traits_are_refused_with_the_offending_path(compute: dict[str, Any], message: str) -> None:
    assert refused(TRAIT, {"key": "t", "compute": compute}).startswith(message)


def test_trees_are_bounded_in_depth_and_size() -> None:
    deep: dict[str, Any] = {"event": "x"}
    for _ in range(MAX_CONDITION_DEPTH + 1):
        deep = {"not": deep}
    assert "nest at most" in refused(AUDIENCE, audience(deep))
    wide = {"any": [{"event": f"e{i}"} for i in range(150)]}
    assert "at most 100 parts" in refused(AUDIENCE, audience(wide))


def test_a_put_body_must_match_the_key_in_the_path() -> None:
    assert parse_definition(AUDIENCE, {"when": {"event": "x"}}, key="buyers").key == "buyers"
    assert refused(AUDIENCE, {"key": "other", "when": {"event": "x"}}, key="buyers").startswith(
        "key: the body says"
    )


def test_numbers_keep_their_form_and_names_default_to_the_key() -> None:
    definition = parse_definition(AUDIENCE, {"key": "big", "when": {"trait": "ltv", "op": "gte", "value": 2}})
    assert definition.body["when"]["value"] == 2 and isinstance(definition.body["when"]["value"], int)
    assert definition.name == "big"


def test_fingerprints_follow_the_formula_and_its_traits() -> None:
    traits = {
        "orders": parse_definition(
            TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
        )
    }
    body = audience({"trait": "orders", "op": "gte", "value": 2})
    first = parse_definition(AUDIENCE, body, computed_traits=frozenset(traits))
    renamed = parse_definition(AUDIENCE, {**body, "name": "Other name"}, computed_traits=frozenset(traits))
    assert fingerprint(first, traits) == fingerprint(renamed, traits)
    changed = {
        "orders": parse_definition(
            TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed", "within_days": 7}}
        )
    }
    assert fingerprint(first, traits) != fingerprint(first, changed)
    stricter = parse_definition(
        AUDIENCE, audience({"trait": "orders", "op": "gte", "value": 3}), computed_traits=frozenset(traits)
    )
    assert fingerprint(first, traits) != fingerprint(stricter, traits)


def test_stored_bodies_keep_the_trait_kind_decided_when_saved() -> None:
    saved = parse_definition(
        AUDIENCE,
        audience({"trait": "orders", "op": "gte", "value": 2}),
        computed_traits=frozenset({"orders"}),
    )
    reread = parse_definition(AUDIENCE, saved.body, stored=True)  # the trait was not loaded (yet)
    assert reread.traits_used() == {"orders"}


# ---- audiences testing audiences ----------------------------------------------------------


def audiences(*bodies: dict[str, Any]) -> dict[str, Any]:
    """Audience definitions by key, each parsed knowing the ones before it."""
    known: dict[str, Any] = {}
    for body in bodies:
        known[body["key"]] = parse_definition(AUDIENCE, body, audiences=frozenset(known))
    return known


def test_an_audience_tests_membership_of_another() -> None:
    known = audiences({"key": "buyers", "when": {"event": "Order Completed"}})
    vip = parse_definition(
        AUDIENCE,
        {"key": "vip", "when": {"all": [{"audience": "buyers"}, {"not": {"audience": "buyers"}}]}},
        audiences=frozenset(known),
    )
    assert vip.when == AllOf((AudienceTest("buyers"), Not(AudienceTest("buyers"))))
    assert vip.body["when"] == {"all": [{"audience": "buyers"}, {"not": {"audience": "buyers"}}]}
    assert vip.audiences_used() == {"buyers"} and vip.uses() == {"buyers"}
    check_references(vip, known)  # no cycle


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({"audience": "nobody"}, "when.audience: there is no audience 'nobody'"),
        ({"any": [{"event": "x"}, {"audience": "Buyers"}]}, "when.any[1].audience: must be snake_case"),
        ({"audience": "spend"}, "when.audience: 'spend' is a computed trait"),
        ({"audience": "buyers", "op": "eq"}, "when.op: unknown field"),
        (
            {"trait": "buyers", "op": "exists"},
            """when.trait: 'buyers' is an audience; test its members with {"audience": 'buyers'}""",
        ),
    ],
)
def test_audience_tests_are_refused_with_the_offending_path(when: dict[str, Any], message: str) -> None:
    found = refused(
        AUDIENCE, audience(when), audiences=frozenset({"buyers"}), computed_traits=frozenset({"spend"})
    )
    assert found.startswith(message), found


def test_an_audience_may_not_test_itself_through_others() -> None:
    known = audiences(
        {"key": "a", "when": {"event": "x"}},
        {"key": "b", "when": {"any": [{"event": "y"}, {"audience": "a"}]}},
    )
    # a is changed to test b, which tests a.
    changed = parse_definition(
        AUDIENCE, {"key": "a", "when": {"not": {"audience": "b"}}}, audiences=frozenset(known)
    )
    with pytest.raises(DefinitionError) as caught:
        check_references(changed, known)
    assert str(caught.value) == "when.not.any[1].audience: an audience cannot test itself (a -> b -> a)"
    itself = parse_definition(AUDIENCE, {"key": "b", "when": {"audience": "b"}}, audiences=frozenset(known))
    with pytest.raises(DefinitionError, match=r"^when\.audience: an audience cannot test itself \(b -> b\)"):
        check_references(itself, known)


def test_references_are_bounded_once_expanded() -> None:
    # Each level tests the one below twice: 2^12 tests of the first once put in place.
    bodies = [{"key": "l0", "when": {"event": "x"}}]
    for level in range(1, 13):
        below = {"audience": f"l{level - 1}"}
        bodies.append({"key": f"l{level}", "when": {"all": [below, below]}})
    known = audiences(*bodies)
    with pytest.raises(DefinitionError, match="more than 1000 parts"):
        check_references(known["l12"], known)
    check_references(known["l5"], known)  # 2^5 tests: fine


def test_fingerprints_follow_the_audiences_tested() -> None:
    known = audiences({"key": "buyers", "when": {"event": "Order Completed"}})
    vip = parse_definition(
        AUDIENCE, {"key": "vip", "when": {"audience": "buyers"}}, audiences=frozenset(known)
    )
    stricter = audiences(
        {"key": "buyers", "when": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}
    )
    # The tested audience's formula changed: the tester's values may change, so it is recomputed.
    assert fingerprint(vip, known) != fingerprint(vip, stricter)
    renamed = audiences({"key": "buyers", "name": "Buyers!", "when": {"event": "Order Completed"}})
    assert fingerprint(vip, known) == fingerprint(vip, renamed)


def test_fingerprints_of_definitions_testing_no_audience_are_unchanged() -> None:
    # Stored statuses hold fingerprints: a definition that tests no audience must keep the one it
    # had before audiences could test audiences, or an upgrade would recompute everything.
    orders = parse_definition(
        TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
    )
    body = audience({"all": [{"trait": "orders", "op": "gte", "value": 2}, {"event": "x"}]})
    repeat = parse_definition(AUDIENCE, body, computed_traits=frozenset({"orders"}))
    before = {"compute": None, "when": repeat.body["when"], "uses": {"orders": orders.body["compute"]}}
    expected = hashlib.sha256(orjson.dumps(before, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    assert fingerprint(repeat, {"orders": orders, "repeat_buyers": repeat}) == expected
