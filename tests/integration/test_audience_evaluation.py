"""Computed traits and audiences on real chDB: profile semantics, every operator, windows, merges,
changed and deleted definitions, and incremental evaluation agreeing with a full backfill.

Events go in as Segment calls through the pipeline's own stages (``ReadApi.send``); the
evaluator runs synchronously with a clock the test sets (``tests.support.audiences``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from feedhouse.audiences.definitions import AUDIENCE, TRAIT
from tests.conftest import ReadApi
from tests.support.audiences import Harness, ids_of, stage_view
from tests.support.datagen import StreamGenerator

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = 86_400_000_000


def micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def at(days: float) -> str:
    return (T0 + timedelta(days=days)).isoformat().replace("+00:00", "Z")


def order(message_id: str, days: float, revenue: float = 10.0, **ids: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": message_id,
        "timestamp": at(days),
        "event": "Order Completed",
        "properties": {"revenue": revenue, "currency": "EUR", "sku": "a"},
        **ids,
    }


@pytest.fixture
def harness(read_api: ReadApi) -> Harness:
    return Harness(read_api.clickhouse, micros(T0 + timedelta(days=1)))


def send(read_api: ReadApi, harness: Harness, *calls: dict[str, Any]) -> int:
    """Store ``calls`` and evaluate what they touched, as the Kafka stage would."""
    read_api.send(*calls)
    ids = ids_of(calls)
    return harness.touch(ids, moved=ids)


ORDERS = {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}}
REPEAT = {"key": "repeat_buyers", "when": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}


def test_an_anonymous_order_and_a_user_order_are_one_profile_with_two(
    read_api: ReadApi, harness: Harness
) -> None:
    read_api.send(order("o1", 0, anonymousId="visitor-1"), order("o2", 0.1, userId="ada"))
    harness.define(TRAIT, ORDERS)
    harness.define(AUDIENCE, REPEAT)
    harness.backfill_all()
    assert harness.values("orders") == {"visitor-1": "1", "ada": "1"}
    assert harness.values("repeat_buyers") == {}

    send(
        read_api,
        harness,
        {
            "type": "identify",
            "messageId": "i1",
            "timestamp": at(0.2),
            "userId": "ada",
            "anonymousId": "visitor-1",
        },
    )
    assert harness.values("orders") == {"ada": "2"}  # visitor-1 is no profile any more
    assert harness.values("repeat_buyers") == {"ada": True}
    entered = [c for c in harness.changes() if c["key"] == "repeat_buyers"]
    assert [(c["profile"], c["member"], c["user_id"], c["cause"]) for c in entered] == [
        ("ada", 1, "ada", "events")
    ]
    gone = [c for c in harness.changes() if c["key"] == "orders" and c["profile"] == "visitor-1"]
    assert [(c["value"], c["anonymous_id"]) for c in gone] == [("1", "visitor-1"), ("", "visitor-1")]


def test_every_operator_over_the_profile(read_api: ReadApi, harness: Harness) -> None:
    read_api.send(
        {
            "type": "track",
            "messageId": "t1",
            "timestamp": at(0),
            "userId": "bo",
            "event": "Order Completed",
            "properties": {"revenue": 10.1, "order": {"sku": "b", "tags": ["x"]}, "coupon": "WINTER10"},
        },
        {
            "type": "track",
            "messageId": "t2",
            "timestamp": at(1),
            "anonymousId": "bo-phone",
            "event": "Order Completed",
            "properties": {"revenue": 20.2, "order": {"sku": "a"}},
        },
        {
            "type": "track",
            "messageId": "t3",
            "timestamp": at(2),
            "userId": "bo",
            "event": "Order Completed",
            "properties": {"revenue": "lots", "order": {"sku": "a"}},
        },
        {
            "type": "identify",
            "messageId": "t4",
            "timestamp": at(3),
            "userId": "bo",
            "anonymousId": "bo-phone",
            "traits": {"plan": "pro"},
        },
        {
            "type": "page",
            "messageId": "t5",
            "timestamp": at(4),
            "userId": "bo",
            "name": "Pricing",
            "properties": {"path": "/pricing"},
        },
        {
            "type": "page",
            "messageId": "t6",
            "timestamp": at(4.5),
            "userId": "bo",
            "name": "Docs",
            "properties": {"path": "/docs"},
        },
        # A resend of t1 (same messageId): counted once.
        {
            "type": "track",
            "messageId": "t1",
            "timestamp": at(0),
            "userId": "bo",
            "event": "Order Completed",
            "properties": {"revenue": 10.1, "order": {"sku": "b", "tags": ["x"]}, "coupon": "WINTER10"},
        },
    )
    harness.now = micros(T0 + timedelta(days=4.75))
    where = "where"
    expected: list[tuple[dict[str, Any], str]] = [
        ({"op": "count"}, "3"),
        ({"op": "sum", "property": "revenue"}, "30.3"),  # the string "lots" is no number
        ({"op": "avg", "property": "revenue"}, "15.15"),
        ({"op": "min", "property": "revenue"}, "10.1"),
        ({"op": "max", "property": "revenue"}, "20.2"),
        ({"op": "first", "property": "order.sku"}, '"b"'),
        ({"op": "last", "property": "order.sku"}, '"a"'),
        ({"op": "most_frequent", "property": "order.sku"}, '"a"'),
        ({"op": "unique", "property": "order.sku"}, '["a","b"]'),
        ({"op": "count", where: [{"property": "coupon", "op": "exists"}]}, "1"),
        ({"op": "count", where: [{"property": "revenue", "op": "gt", "value": 15}]}, "1"),
        ({"op": "count", where: [{"property": "order.sku", "op": "neq", "value": "b"}]}, "2"),
        ({"op": "count", where: [{"property": "order.tags", "op": "contains", "value": "x"}]}, "1"),
        ({"op": "count", where: [{"property": "revenue", "op": "lte", "value": 10.1}]}, "1"),
        (
            {
                "op": "last",
                "property": "revenue",
                where: [{"property": "order.sku", "op": "eq", "value": "a"}],
            },
            '"lots"',
        ),
    ]
    for index, (compute, _) in enumerate(expected):
        harness.define(TRAIT, {"key": f"t{index}", "compute": {**compute, "event": "Order Completed"}})
    harness.define(TRAIT, {"key": "pages", "compute": {"op": "count", "type": "page"}})
    harness.define(
        TRAIT, {"key": "plan_seen", "compute": {"op": "last", "type": "identify", "property": "plan"}}
    )
    harness.define(
        TRAIT, {"key": "recent", "compute": {"op": "count", "event": "Order Completed", "within_days": 4}}
    )
    harness.backfill_all()
    for index, (compute, value) in enumerate(expected):
        assert harness.values(f"t{index}") == {"bo": value}, compute
    assert harness.values("pages") == {"bo": "2"}
    assert harness.values("plan_seen") == {"bo": '"pro"'}
    assert harness.values("recent") == {"bo": "2"}  # the day-0 order is 4.75 days old


def test_audiences_combine_trait_and_event_tests(read_api: ReadApi, harness: Harness) -> None:
    read_api.send(
        order("a1", 0, userId="ann"),
        order("a2", 0.5, userId="ann", revenue=500),
        order("b1", 0, userId="ben"),
        {
            "type": "identify",
            "messageId": "a3",
            "timestamp": at(0),
            "userId": "ann",
            "traits": {"plan": "pro"},
        },
        {
            "type": "identify",
            "messageId": "b2",
            "timestamp": at(0),
            "userId": "ben",
            "traits": {"plan": "free"},
        },
    )
    harness.define(
        TRAIT, {"key": "spend", "compute": {"op": "sum", "event": "Order Completed", "property": "revenue"}}
    )
    harness.define(
        AUDIENCE,
        {
            "key": "valuable",
            "when": {
                "all": [
                    {
                        "any": [
                            {"trait": "spend", "op": "gte", "value": 100},
                            {"trait": "plan", "op": "eq", "value": "pro"},
                        ]
                    },
                    {"not": {"trait": "plan", "op": "eq", "value": "free"}},
                ]
            },
        },
    )
    harness.define(AUDIENCE, {"key": "no_plan", "when": {"trait": "plan", "op": "exists", "value": False}})
    harness.backfill_all()
    assert harness.values("valuable") == {"ann": True}
    assert harness.values("no_plan") == {}  # every profile here has a plan
    # A trait change moves membership: ben upgrades, ann is downgraded.
    send(
        read_api,
        harness,
        {
            "type": "identify",
            "messageId": "b3",
            "timestamp": at(1),
            "userId": "ben",
            "traits": {"plan": "pro"},
        },
        {
            "type": "identify",
            "messageId": "a4",
            "timestamp": at(1),
            "userId": "ann",
            "traits": {"plan": "free"},
        },
    )
    assert harness.values("valuable") == {"ben": True}
    # A late identify (older event time) does not override the newer plan (identity rule 6).
    send(
        read_api,
        harness,
        {
            "type": "identify",
            "messageId": "b0",
            "timestamp": at(0.5),
            "userId": "ben",
            "traits": {"plan": "free"},
        },
    )
    assert harness.values("valuable") == {"ben": True}


def test_members_exit_when_their_window_passes_without_any_new_event(
    read_api: ReadApi, harness: Harness
) -> None:
    read_api.send(order("o1", 0, userId="cy"), order("o2", 10, userId="cy"), order("o3", 0, userId="di"))
    harness.now = micros(T0 + timedelta(days=11))
    harness.define(
        AUDIENCE,
        {
            "key": "two_in_30",
            "when": {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
        },
    )
    harness.define(
        TRAIT,
        {"key": "orders_30d", "compute": {"op": "count", "event": "Order Completed", "within_days": 30}},
    )
    harness.backfill_all()
    harness.expire()  # the first check only sets the mark
    assert harness.values("two_in_30") == {"cy": True}
    harness.now = micros(T0 + timedelta(days=29))
    assert harness.expire() == 0
    harness.now = micros(T0 + timedelta(days=31))  # o1 and o3 left the window
    assert harness.expire() > 0
    assert harness.values("two_in_30") == {}
    assert harness.values("orders_30d") == {"cy": "1"}
    exits = [c for c in harness.changes() if c["cause"] == "window"]
    assert {(c["key"], c["profile"], c["member"], c["value"]) for c in exits} == {
        ("two_in_30", "cy", 0, ""),
        ("orders_30d", "cy", 0, "1"),
        ("orders_30d", "di", 0, ""),
    }


def test_an_alias_merges_profiles_and_their_memberships(read_api: ReadApi, harness: Harness) -> None:
    read_api.send(order("o1", 0, userId="old-id"), order("o2", 1, userId="new-id"))
    harness.define(AUDIENCE, REPEAT)
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {}
    send(
        read_api,
        harness,
        {"type": "alias", "messageId": "al", "timestamp": at(2), "previousId": "old-id", "userId": "new-id"},
    )
    assert harness.values("repeat_buyers") == {"new-id": True}


def test_a_device_claimed_earlier_by_someone_else_moves_its_orders(
    read_api: ReadApi, harness: Harness
) -> None:
    # ed claims the tablet at day 2; fay's earlier claim (day 1) arrives later and wins (rule 3):
    # ed, whom the tablet's orders made a member, must be evaluated again, though none of the
    # records that arrive now names him.
    read_api.send(
        order("t1", 0, anonymousId="tablet"),
        order("e1", 0.5, userId="ed"),
        {"type": "identify", "messageId": "c2", "timestamp": at(2), "userId": "ed", "anonymousId": "tablet"},
    )
    harness.define(AUDIENCE, REPEAT)
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {"ed": True}
    send(
        read_api,
        harness,
        {"type": "identify", "messageId": "c1", "timestamp": at(1), "userId": "fay", "anonymousId": "tablet"},
    )
    assert harness.values("repeat_buyers") == {}


def test_changed_and_deleted_definitions(read_api: ReadApi, harness: Harness) -> None:
    read_api.send(order("g1", 0, userId="gil"), order("g2", 1, userId="gil"), order("h1", 0, userId="hal"))
    harness.define(AUDIENCE, REPEAT)
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {"gil": True}
    harness.define(AUDIENCE, {**REPEAT, "when": {"event": "Order Completed"}})  # PUT: one order is enough
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {"gil": True, "hal": True}
    renamed = harness.define(AUDIENCE, {**REPEAT, "name": "Buyers", "when": {"event": "Order Completed"}})
    before = len(harness.changes())
    harness.backfill_all()
    assert len(harness.changes()) == before and renamed.revision == 3  # same formula: nothing recomputed
    harness.delete("repeat_buyers")
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {}
    deleted = [c for c in harness.changes() if c["cause"] == "deleted"]
    assert sorted(c["profile"] for c in deleted) == ["gil", "hal"]
    # Numbering goes on per profile, so every change has its own messageId.
    gil = [c["index"] for c in harness.changes() if c["profile"] == "gil"]
    assert gil == [1, 2]
    assert len({c["message_id"] for c in harness.changes()}) == len(harness.changes())


def test_an_audience_of_an_audience_follows_it(read_api: ReadApi, harness: Harness) -> None:
    one_timers = {
        "key": "one_timers",
        "when": {"all": [{"event": "Order Completed"}, {"not": {"audience": "repeat_buyers"}}]},
    }
    read_api.send(order("a1", 0, userId="ann"), order("a2", 0.5, userId="ann"), order("b1", 0, userId="ben"))
    harness.define(AUDIENCE, REPEAT)
    harness.define(AUDIENCE, one_timers)
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {"ann": True}
    assert harness.values("one_timers") == {"ben": True}
    # A new event moves both in the same pass: ben leaves one_timers as he enters repeat_buyers.
    send(read_api, harness, order("b2", 0.7, userId="ben"))
    assert harness.values("repeat_buyers") == {"ann": True, "ben": True}
    assert harness.values("one_timers") == {}
    # A changed tested audience recomputes its testers: with 3 orders to repeat, both are one-timers.
    harness.define(
        AUDIENCE, {**REPEAT, "when": {"event": "Order Completed", "count": {"op": "gte", "value": 3}}}
    )
    harness.backfill_all()
    assert harness.values("repeat_buyers") == {}
    assert harness.values("one_timers") == {"ann": True, "ben": True}
    entered = [
        (c["profile"], c["cause"]) for c in harness.changes() if c["key"] == "one_timers" and c["member"]
    ]
    assert sorted(entered) == [("ann", "definition"), ("ben", "definition"), ("ben", "definition")]


def test_replays_record_nothing(read_api: ReadApi, harness: Harness) -> None:
    read_api.send(order("o1", 0, userId="ivy"), order("o2", 1, userId="ivy"))
    harness.define(AUDIENCE, REPEAT)
    harness.backfill_all()
    before = harness.changes()
    assert harness.touch({"ivy"}) == 0
    again = Harness(read_api.clickhouse, harness.now)  # a restarted evaluator, same data
    again.evaluator.refresh(lambda _: True)
    assert again.touch({"ivy"}, {"ivy"}) == 0
    assert harness.changes() == before


def test_names_and_values_are_data_never_sql(read_api: ReadApi, harness: Harness) -> None:
    hostile = "x'); DROP TABLE events; --"
    read_api.send(
        {
            "type": "track",
            "messageId": "h1",
            "timestamp": at(0),
            "userId": "jo",
            "event": hostile,
            "properties": {"note": hostile},
        }
    )
    harness.define(
        AUDIENCE,
        {
            "key": "odd",
            "when": {"event": hostile, "where": [{"property": "note", "op": "eq", "value": hostile}]},
        },
    )
    harness.define(AUDIENCE, {"key": "odd_trait", "when": {"trait": hostile, "op": "eq", "value": hostile}})
    harness.backfill_all()
    assert harness.values("odd") == {"jo": True}
    assert harness.values("odd_trait") == {}
    assert read_api.clickhouse.query("SELECT count() FROM events").result_rows[0][0] == 1


@pytest.mark.parametrize("as_stage", [False, True], ids=["whole", "narrowed-by-kind"])
def test_incremental_passes_agree_with_a_full_backfill(
    read_api: ReadApi, harness: Harness, as_stage: bool
) -> None:
    """A realistic stream (merges, aliases, shared devices, late events) half before the
    definitions, half after as incremental passes: the values equal a fresh backfill's. Passes
    evaluate every touched profile whole, or as the Kafka stage does: a profile touched by
    events alone only for the definitions those events' kinds count."""
    stream = StreamGenerator(seed=11, profiles=150)
    calls = [next(stream) for _ in range(3000)]
    first, rest = calls[:1500], calls[1500:]
    read_api.send(*first)
    harness.now = micros(datetime(2026, 1, 1, 1, tzinfo=UTC))
    formulas = {
        "orders": {"op": "count", "event": "Order Completed"},
        "spend": {"op": "sum", "event": "Order Completed", "property": "revenue"},
        "top_sku": {"op": "most_frequent", "event": "Product Viewed", "property": "product_id"},
        "last_plan": {"op": "last", "type": "identify", "property": "plan"},
        "first_sku": {"op": "first", "event": "Product Viewed", "property": "product_id"},
        "categories": {"op": "unique", "event": "Product Added", "property": "category"},
        "big_orders": {
            "op": "count",
            "event": "Order Completed",
            "where": [{"property": "revenue", "op": "gt", "value": 50}],
        },
    }
    audiences = {
        "buyers": {
            "all": [
                {"event": "Order Completed", "count": {"op": "gte", "value": 2}},
                {"trait": "plan", "op": "neq", "value": "free"},
            ]
        },
        "recent_pages": {"type": "page", "within_days": 1, "count": {"op": "gte", "value": 3}},
        # Kinds read together, a computed trait and audiences tested inline: a profile's new
        # event of one kind must bring every kind its definitions read.
        "cart_abandoners": {"all": [{"event": "Checkout Started"}, {"not": {"event": "Order Completed"}}]},
        "big_spenders": {"trait": "spend", "op": "gt", "value": 40},
        "buyers_or_readers": {"any": [{"audience": "buyers"}, {"audience": "recent_pages"}]},
        "mobile": {"type": "screen", "count": {"op": "gte", "value": 2}},
    }
    for key, compute in formulas.items():
        harness.define(TRAIT, {"key": key, "compute": compute})
    for key, when in audiences.items():
        harness.define(AUDIENCE, {"key": key, "when": when})
    harness.backfill_all()
    narrowed = 0
    for start in range(0, len(rest), 250):
        part = rest[start : start + 250]
        if as_stage:
            read_api.send(*part)
            harness.touch_as_stage(part)
            narrowed += len(stage_view(part)[1])
        else:
            send(read_api, harness, *part)
    for key, compute in formulas.items():
        harness.define(TRAIT, {"key": f"{key}_fresh", "compute": compute})
    for key, when in audiences.items():
        harness.define(AUDIENCE, {"key": f"{key}_fresh", "when": orjson.loads(orjson.dumps(when))})
    harness.backfill_all()
    for key in [*formulas, *audiences]:
        incremental, fresh = harness.values(key), harness.values(f"{key}_fresh")
        assert incremental == fresh, key
        assert fresh, f"{key} has no values: the stream no longer exercises it"
    assert narrowed > 100 or not as_stage, f"only {narrowed} ids were touched by events alone"


def test_analyst_views_show_membership_history_and_values(read_api: ReadApi, harness: Harness) -> None:
    engage = {"computation_class": "audience", "computation_key": "vip", "space_id": "spa_x"}
    read_api.send(
        order("k1", 0, userId="kay"),
        {
            "type": "identify",
            "messageId": "k2",
            "timestamp": at(0),
            "userId": "kay",
            "traits": {"vip": True},
            "context": {"personas": engage},
        },
    )
    harness.define(TRAIT, ORDERS)
    harness.define(AUDIENCE, {"key": "buyers", "when": {"event": "Order Completed"}})
    harness.backfill_all()
    harness.define(
        AUDIENCE, {"key": "buyers", "when": {"event": "Order Completed", "count": {"op": "gte", "value": 2}}}
    )
    harness.backfill_all()  # kay exits
    client = read_api.clickhouse

    def query(sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in client.query(sql).result_rows]

    assert query("SELECT audience, change, cause FROM computed_audience_history ORDER BY seq") == [
        ("buyers", "entered", "definition"),
        ("buyers", "exited", "definition"),
    ]
    membership = query(
        "SELECT profile_id, audience, member, entered_at IS NOT NULL, exited_at IS NOT NULL"
        " FROM computed_audience_membership"
    )
    assert membership == [("kay", "buyers", False, True, True)]
    assert query("SELECT profile_id, trait, value FROM computed_trait_values") == [("kay", "orders", "1")]
    assert sorted(
        query("SELECT audience, computed_by, member FROM all_audience_membership WHERE profile_id = 'kay'")
    ) == [
        ("buyers", "feedhouse", 0),
        ("vip", "engage", 1),
    ]
    assert query("SELECT key, kind, revision FROM definitions_current ORDER BY key") == [
        ("buyers", "audience", 2),
        ("orders", "trait", 1),
    ]
