"""Audience backfill and incremental passes on a realistic dataset in chDB.

    python -m bench.audience_backfill                                   # 200k events / 20k profiles
    python -m bench.audience_backfill --events 1000000 --profiles 100000 --data-dir /tmp/fh1m --keep
    python -m bench.audience_backfill --events 10000000 --profiles 1000000 --data-dir /tmp/fh10m --keep

The dataset is ``bench.read_api``'s (the generated stream through the pipeline's own pure
stages, unmerged parts included; ``--data-dir`` with ``--keep`` reuses it). Measured, in this
process, with the evaluator's own code (``feedhouse.audiences.evaluator``):

1. **backfill of a new audience** ("ordered at least twice within 30 days and is not on the
   free plan": an event test with a window and a trait test merged across the profile's ids),
   from the definition being read to it being live: the query over every event and profile,
   the diff against recorded values, the change-log insert. The ceiling is a bare
   ``SELECT count() FROM events`` + ``id_mapping`` resolution join of the same run, the least a
   query touching every event and its profile costs here.
2. the same for **10 computed traits and 10 audiences** defined at once (one query each);
3. **incremental passes** over the ids of N consecutive events of the stream (its most recent,
   in order), all definitions live: what the evaluator does per batch of live traffic, with
   every touched profile evaluated whole and, in turns, as the Kafka stage does (a profile
   touched by events alone only for what their kinds count: the ratio of the two). (All
   these events are already stored and evaluated, so the passes find no change: the cost of
   changes is in the backfill figures.)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from clickhouse_connect.driver.client import Client

from bench.common import Figure, Result, percentile, print_table, scaled
from bench.read_api import data_directory, load
from feedhouse import settings as settings_module
from feedhouse.audiences.definitions import AUDIENCE, TRAIT, parse_definition
from feedhouse.audiences.evaluator import Evaluator
from feedhouse.audiences.runner import BACKFILL_GROUP
from feedhouse.audiences.store import Store, stored_for
from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.retry import sleep_wait

TARGET_SECONDS = 60.0  # backfill of a new audience at 10M events / 1M profiles (docs/design.md)
NEW_KEY = "bench_repeat_buyers"
NEW_AUDIENCE: dict[str, Any] = {
    "key": NEW_KEY,
    "when": {
        "all": [
            {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
            {"trait": "plan", "op": "neq", "value": "free"},
        ]
    },
}


def twenty() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """10 computed traits and 10 audiences over the generated stream's events and traits."""
    traits = [
        {"key": "t_orders", "compute": {"op": "count", "event": "Order Completed"}},
        {"key": "t_orders_30d", "compute": {"op": "count", "event": "Order Completed", "within_days": 30}},
        {"key": "t_revenue", "compute": {"op": "sum", "event": "Order Completed", "property": "revenue"}},
        {"key": "t_avg_price", "compute": {"op": "avg", "event": "Product Added", "property": "price"}},
        {"key": "t_max_order", "compute": {"op": "max", "event": "Order Completed", "property": "revenue"}},
        {
            "key": "t_first_sku",
            "compute": {"op": "first", "event": "Product Viewed", "property": "product_id"},
        },
        {"key": "t_last_page", "compute": {"op": "last", "type": "page", "property": "path"}},
        {
            "key": "t_top_sku",
            "compute": {"op": "most_frequent", "event": "Product Viewed", "property": "product_id"},
        },
        {
            "key": "t_categories",
            "compute": {"op": "unique", "event": "Product Added", "property": "category"},
        },
        {
            "key": "t_vip_orders",
            "compute": {
                "op": "count",
                "event": "Order Completed",
                "where": [{"property": "coupon", "op": "eq", "value": "VIP"}],
            },
        },
    ]
    audiences = [
        {"key": "a_buyers", "when": {"event": "Order Completed"}},
        {
            "key": "a_repeat_30d",
            "when": {"event": "Order Completed", "within_days": 30, "count": {"op": "gte", "value": 2}},
        },
        {"key": "a_big_spenders", "when": {"trait": "t_revenue", "op": "gt", "value": 2000}},
        {"key": "a_pro", "when": {"trait": "plan", "op": "eq", "value": "pro"}},
        {"key": "a_not_free", "when": {"not": {"trait": "plan", "op": "eq", "value": "free"}}},
        {
            "key": "a_pricing_visitors",
            "when": {"type": "page", "where": [{"property": "path", "op": "eq", "value": "/pricing"}]},
        },
        {
            "key": "a_cart_abandoners",
            "when": {
                "all": [
                    {"event": "Checkout Started", "within_days": 7},
                    {"not": {"event": "Order Completed", "within_days": 7}},
                ]
            },
        },
        {"key": "a_mobile", "when": {"type": "screen", "count": {"op": "gte", "value": 3}}},
        {
            "key": "a_engaged",
            "when": {
                "any": [
                    {"event": "Feature Used", "count": {"op": "gte", "value": 5}},
                    {"trait": "logins", "op": "gte", "value": 100},
                ]
            },
        },
        {"key": "a_vip_coupon", "when": {"trait": "t_vip_orders", "op": "gte", "value": 1}},
    ]
    return traits, audiences


IDENTITY_TYPES = ("identify", "group", "alias")  # calls the identity worker turns into records


def define(store: Store, kind: str, body: dict[str, Any]) -> None:
    definitions = store.definitions()
    definition = parse_definition(
        kind, body, computed_traits=definitions.keys(TRAIT), audiences=definitions.keys(AUDIENCE)
    )
    store.save_definition(stored_for(definition, definitions.by_key.get(definition.key)))


def backfill(evaluator: Evaluator) -> tuple[float, list[float]]:
    """Refresh, run every scheduled backfill as the runner does (groups of up to
    ``BACKFILL_GROUP``, one query each), apply; (seconds until all live, seconds per query)."""
    started = time.perf_counter()
    evaluator.refresh(sleep_wait)
    jobs = []
    while not evaluator.backfills.empty():
        jobs.append(evaluator.backfills.get())
    queries = []
    for first in range(0, len(jobs), BACKFILL_GROUP):
        query_started = time.perf_counter()
        evaluator.run_backfills(jobs[first : first + BACKFILL_GROUP])
        queries.append(time.perf_counter() - query_started)
    evaluator.apply_finished(sleep_wait)
    return time.perf_counter() - started, queries


def resolution_floor(client: Client) -> float:
    started = time.perf_counter()
    client.query(
        "SELECT count() FROM events AS e LEFT JOIN"
        " (SELECT id, argMax(profile_id, version) AS profile_id FROM id_mapping GROUP BY id) AS m"
        " ON m.id = e.person_key WHERE e.person_key != ''"
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=scaled(200_000))
    parser.add_argument("--profiles", type=int, default=0, help="people in the stream (default events/10)")
    parser.add_argument("--passes", type=int, default=20, help="incremental passes measured")
    parser.add_argument("--touched", type=int, default=5000, help="events per incremental pass")
    parser.add_argument("--data-dir")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--only-new", action="store_true", help="time 2 definitions at once, not 20 (large datasets: memory)"
    )
    args = parser.parse_args()
    profiles = args.profiles or max(1, args.events // 10)
    result = Result(
        "audience_backfill", params={"events": args.events, "profiles": profiles, "touched": args.touched}
    )
    with data_directory(args.data_dir, args.keep) as directory:
        settings = settings_module.load({}, data_dir=directory)
        client = get_client(settings)
        migrate(client, database_for(settings))
        for table in (
            "definitions",
            "computation_status",
            "computed_changes",
            "computed_current",
            "computed_by_profile",
            "evaluator_state",
        ):
            client.command(f"TRUNCATE TABLE IF EXISTS {table}")  # earlier runs' definitions
        stored = int(client.query("SELECT count() FROM events").result_rows[0][0])
        if stored == 0:
            print(f"loading {args.events:,} events / {profiles:,} profiles into {directory}", flush=True)
            result.details["load_seconds"] = round(load(client, args.events, profiles, args.seed), 1)
        else:
            print(f"reusing {stored:,} events in {directory}", flush=True)
        counts = client.query(
            "SELECT (SELECT count() FROM events), (SELECT uniqExact(profile_id) FROM"
            " (SELECT if(m.profile_id = '', e.person_key, m.profile_id) AS profile_id FROM"
            " (SELECT DISTINCT person_key FROM events WHERE person_key != '') AS e LEFT JOIN"
            " (SELECT id, argMax(profile_id, version) AS profile_id FROM id_mapping GROUP BY id) AS m"
            " ON m.id = e.person_key))"
        ).result_rows[0]
        result.details["events"], result.details["profiles"] = int(counts[0]), int(counts[1])
        print(f"  {counts[0]:,} events, {counts[1]:,} profiles", flush=True)
        floor = min(resolution_floor(client) for _ in range(3))
        store = Store(client)
        # The evaluator's clock: just after the generated stream's last event.
        newest = int(
            client.query("SELECT toUnixTimestamp64Micro(max(timestamp)) FROM events").result_rows[0][0]
        )
        evaluator = Evaluator(
            client, get_client(settings, purpose="backfill"), clock=lambda: newest + 60_000_000
        )

        define(store, AUDIENCE, NEW_AUDIENCE)
        one, _ = backfill(evaluator)
        members = store.sizes([store.definitions().by_key[NEW_KEY].computation_id])
        print(
            f"  new audience: live after {one:.2f} s ({sum(members.values()):,} members; floor {floor:.2f} s)"
        )
        result.add(
            Figure(
                "audience backfill",
                "one new audience, definition -> live",
                one,
                "s",
                ceiling=floor,
                ceiling_label="count of every event with its profile",
                target=TARGET_SECONDS,
                better="lower",
            )
        )

        traits, audiences = twenty()
        if args.only_new:  # the 20 are still defined (the passes below evaluate them), not timed
            traits, audiences = traits[:1], audiences[:1]
        for body in traits:
            define(store, TRAIT, body)
        for body in audiences:
            define(store, AUDIENCE, body)
        total, queries = backfill(evaluator)
        count = len(traits) + len(audiences)
        print(f"  {count} definitions at once: all live after {total:.1f} s (queries: {queries})")
        result.details["backfill_query_seconds"] = [round(value, 3) for value in queries]
        result.add(
            Figure("audience backfill", f"{count} definitions at once, all live", total, "s", better="lower")
        )

        # Consecutive windows of the stream's most recent events, oldest first: what successive
        # batches of live traffic touch (busy profiles recur from one window to the next). Each
        # window is evaluated twice: every touched profile whole, and as the Kafka stage does
        # (identify, group and alias calls bring identity records: their ids whole; any other
        # event narrows its profile to what its kind counts). The second replays the first's
        # profiles (its cache of current values warmer), so the two take turns going first.
        events = [
            (str(key), str(kind), str(name))
            for key, kind, name in client.query(
                "SELECT person_key, type, event FROM (SELECT person_key, type, event, received_at FROM events"
                " WHERE person_key != '' ORDER BY received_at DESC LIMIT {n:UInt32}) ORDER BY received_at",
                parameters={"n": args.touched * args.passes},
            ).result_rows
        ]
        timings: dict[str, list[float]] = {"whole": [], "narrowed by kind": []}
        for index in range(args.passes):
            part = events[index * args.touched : (index + 1) * args.touched]
            whole = {key for key, kind, _ in part if kind in IDENTITY_TYPES}
            seen: dict[str, set[tuple[str, str]]] = {}
            for key, kind, name in part:
                if kind not in IDENTITY_TYPES:
                    seen.setdefault(key, set()).add((kind, name))
            relevant = evaluator.relevant(seen)
            order = ["whole", "narrowed by kind"]
            for variant in order if index % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                if variant == "whole":
                    evaluator.evaluate_ids(whole | relevant, (), "events", sleep_wait)
                else:
                    evaluator.evaluate_ids(whole, (), "events", sleep_wait, seen=seen)
                timings[variant].append(time.perf_counter() - started)
        live = len(evaluator.order)
        for variant, passes in timings.items():
            p50, p95 = percentile(passes, 50), percentile(passes, 95)
            print(
                f"  incremental pass over {args.touched} events, {live} definitions, {variant}:"
                f" p50 {p50 or 0:.3f} s, p95 {p95 or 0:.3f} s"
            )
            for name, value in (("p50", p50), ("p95", p95)):
                result.add(
                    Figure(
                        "audience incremental",
                        f"pass over {args.touched} consecutive events ({live} live), {variant}, {name}",
                        value,
                        "s",
                        better="lower",
                    )
                )
            result.details[f"pass_seconds_{variant.replace(' ', '_')}"] = [round(v, 4) for v in passes]
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
