"""Read-API latency on a realistic dataset in chDB: p50 / p95 per endpoint over random ids.

    python -m bench.read_api                                  # 200k events / 20k profiles
    python -m bench.read_api --events 1000000 --profiles 100000
    python -m bench.read_api --events 10000000 --profiles 1000000 --data-dir /tmp/fh10m --keep
    python -m bench.read_api ... --optimize    # merge every table fully first (the worst case for FINAL)

The dataset is ``tests.support.datagen``'s stream put through the pipeline's own pure stages
(``tests.support.offline_pipeline``: events, id mappings, id state with superseded versions, groups), so
the tables hold what the deployed pipeline writes, unmerged parts included. ``--data-dir`` with
``--keep`` loads once and reuses the data on later runs (same sizes).

Each endpoint is called through the Starlette app (``feedhouse.read.api.read_routes`` and the app's
pages, ``feedhouse.app.routes.app_routes``, signed in; in-process ASGI, as the gateway serves
them, so a page's figure is its whole server time, HTML rendering included), one request at a
time, for ``--samples`` random inputs: ids are
drawn from every kind (userIds, anonymousIds, aliased old ids), so most profiles are small and
a few are the heavy, many-times-aliased users datagen creates. The "ceiling" of each figure is
the chDB round trip of ``SELECT 1`` through the same client in the same run: the floor any
query pays here.
"""

from __future__ import annotations

import argparse
import base64
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bench.common import Figure, Result, percentile, print_table, scaled
from feedhouse import settings as settings_module
from feedhouse.app.routes import app_routes
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.read.api import read_routes
from feedhouse.read.lanes import Lanes
from feedhouse.read.params import RECENCY_CURSOR, encode_cursor
from feedhouse.settings import Settings
from tests.support.datagen import StreamGenerator
from tests.support.offline_pipeline import OfflinePipeline

TOKEN = "bench-read-token"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()}
PROFILES_API = "/v1/spaces/default/collections/users/profiles"
# docs/design.md (read API) and the app's targets (person page, timeline pages, people list and
# search, feed, common-value trait filter); the Profile API within the same bounds.
TARGETS_MS = {
    "profile": 20.0,
    "timeline": 50.0,
    "timeline (page 2)": 50.0,
    "feed": 100.0,
    "feed (page 2)": 100.0,
    "search (email)": 50.0,
    "audiences": 1000.0,
    "audience members": 1000.0,
    "page: person": 100.0,
    "page: person, next timeline page": 50.0,
    "page: people list": 50.0,
    "page: people list (any page)": 50.0,
    "page: people search (email)": 50.0,
    "page: people filter plan=pro": 300.0,
    "page: feed": 100.0,
    "profile API: traits": 100.0,
    "profile API: events": 100.0,
    "profile API: events (page 2)": 50.0,
    "profile API: external_ids": 100.0,
    "profile API: metadata": 100.0,
    "profile API: links": 100.0,
}


def load(client: Client, events: int, profiles: int, seed: int) -> float:
    """Generate and insert the dataset; returns seconds taken."""
    started = time.perf_counter()
    stream = StreamGenerator(seed=seed, profiles=profiles)
    pipeline = OfflinePipeline()
    for index in range(events):
        pipeline.add(next(stream))
        if pipeline.pending() >= 200_000:
            pipeline.flush(client)
        if index and index % 1_000_000 == 0:
            print(f"  {index:,} events in {time.perf_counter() - started:.0f} s", flush=True)
    pipeline.flush(client)
    return time.perf_counter() - started


def samples(client: Client, count: int, seed: int) -> dict[str, list[str]]:
    """Random inputs: ids of every kind, emails, groups, audiences, feed positions."""

    def column(sql: str) -> list[str]:
        return [str(row[0]) for row in client.query(sql, parameters={"n": count, "seed": seed}).result_rows]

    ids = column(
        "SELECT id FROM (SELECT DISTINCT person_key AS id FROM events WHERE person_key != ''"
        " UNION DISTINCT SELECT id FROM id_mapping) ORDER BY cityHash64(id, {seed:UInt64}) LIMIT {n:UInt32}"
    )
    return {
        "ids": ids,
        "aliased": column(
            "SELECT id FROM id_mapping GROUP BY id HAVING argMax(profile_id, version) != id"
            " AND startsWith(id, 'user-') ORDER BY cityHash64(id, {seed:UInt64}) LIMIT {n:UInt32}"
        ),
        "emails": column(
            "SELECT DISTINCT value FROM id_state_by_trait WHERE key = 'email'"
            " ORDER BY cityHash64(value, {seed:UInt64}) LIMIT {n:UInt32}"
        ),
        "groups": column(
            "SELECT DISTINCT group_id FROM id_state_by_group ORDER BY cityHash64(group_id, {seed:UInt64})"
            " LIMIT {n:UInt32}"
        ),
        "audiences": column("SELECT DISTINCT audience FROM id_state_by_audience"),
        # Profiles with more than one page of timeline (next-page figures need them).
        "heavy": column(
            "SELECT person_key FROM events_by_person_time WHERE startsWith(person_key, 'user-')"
            " GROUP BY person_key HAVING count() > 60"
            " ORDER BY cityHash64(person_key, {seed:UInt64}) LIMIT {n:UInt32}"
        ),
        "user_ids": column(
            "SELECT DISTINCT user_id FROM events WHERE startsWith(user_id, 'user-')"
            " ORDER BY cityHash64(user_id, {seed:UInt64}) LIMIT {n:UInt32}"
        ),
        # People-list cursors at random depths: positions of random rows of person_recency.
        "recency": [
            encode_cursor(RECENCY_CURSOR, int(ts), str(key))
            for ts, key in client.query(
                "SELECT toUnixTimestamp64Micro(last_seen), person_key FROM person_recency"
                " ORDER BY cityHash64(person_key, {seed:UInt64}) LIMIT {n:UInt32}",
                parameters={"n": count, "seed": seed},
            ).result_rows
        ],
    }


def timed(
    calls: int,
    make: Callable[[int], tuple[str, dict[str, Any]]],
    http: TestClient,
    headers: dict[str, str] | None = None,
) -> list[float]:
    """Milliseconds of ``calls`` GETs; every answer must be a 200."""
    headers = headers if headers is not None else {"Authorization": f"Bearer {TOKEN}"}
    latencies = []
    for index in range(calls):
        path, params = make(index)
        started = time.perf_counter()
        response = http.get(path, params=params, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path} {params}: {response.status_code} {response.text[:300]}")
    return latencies


def next_cursor(http: TestClient, path: str, params: dict[str, Any]) -> str | None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return http.get(path, params=params, headers=headers).json()["next"]


def measure(
    client: Client, http: TestClient, inputs: dict[str, list[str]], count: int, only: tuple[str, ...] = ()
) -> dict[str, list[float]]:
    ids, groups = inputs["ids"], inputs["groups"]
    rng = random.Random(1)
    feed_cursors = [next_cursor(http, "/v1/feed", {"limit": rng.choice([50, 200, 500])}) for _ in range(5)]
    page_two = {
        identifier: next_cursor(http, f"/v1/profiles/{identifier}/timeline", {})
        for identifier in [*ids[: count // 2], *inputs["heavy"][: count // 2]]
    }
    deep = [(identifier, cursor) for identifier, cursor in page_two.items() if cursor]
    runs: dict[str, Callable[[int], tuple[str, dict[str, Any]]]] = {
        "profile": lambda i: (f"/v1/profiles/{ids[i % len(ids)]}", {}),
        "profile (aliased old id)": lambda i: (
            f"/v1/profiles/{inputs['aliased'][i % len(inputs['aliased'])]}",
            {},
        ),
        "timeline": lambda i: (f"/v1/profiles/{ids[i % len(ids)]}/timeline", {}),
        "timeline (page 2)": lambda i: (
            f"/v1/profiles/{deep[i % len(deep)][0]}/timeline",
            {"cursor": deep[i % len(deep)][1]},
        ),
        "timeline (hidden, type)": lambda i: (
            f"/v1/profiles/{ids[i % len(ids)]}/timeline",
            {"hidden": "true", "type": "track,identify"},
        ),
        "feed": lambda i: ("/v1/feed", {}),
        "feed (page 2)": lambda i: ("/v1/feed", {"cursor": feed_cursors[i % len(feed_cursors)]}),
        "search (email)": lambda i: (
            "/v1/profiles",
            {"trait.email": inputs["emails"][i % len(inputs["emails"])]},
        ),
        "list profiles": lambda i: ("/v1/profiles", {}),
        "group": lambda i: (f"/v1/groups/{groups[i % len(groups)]}", {}),
        "audiences": lambda i: ("/v1/audiences", {}),
        "audience members": lambda i: (
            f"/v1/audiences/{inputs['audiences'][i % len(inputs['audiences'])]}/members",
            {},
        ),
    }
    users = inputs["user_ids"]
    recency = inputs["recency"]
    api_page_two = {
        user: http.get(f"{PROFILES_API}/user_id:{user}/events", headers=BASIC).json()["cursor"]["next"]
        for user in [*users[: count // 2], *inputs["heavy"][: count // 2]]
    }
    api_deep = [(user, cursor) for user, cursor in api_page_two.items() if cursor]
    runs |= {
        "page: person": lambda i: (f"/people/{ids[i % len(ids)]}", {}),
        "page: person, next timeline page": lambda i: (
            f"/people/{deep[i % len(deep)][0]}",
            {"cursor": deep[i % len(deep)][1], "fragment": "1"},
        ),
        "page: people list": lambda i: ("/people", {}),
        "page: people list (any page)": lambda i: ("/people", {"cursor": recency[i % len(recency)]}),
        "page: people search (email)": lambda i: (
            "/people",
            {"q": inputs["emails"][i % len(inputs["emails"])]},
        ),
        "page: people filter plan=pro": lambda i: ("/people", {"q": "plan=pro"}),
        "page: feed": lambda i: ("/feed", {}),
    }

    def profile_api(route: str) -> Callable[[int], tuple[str, dict[str, Any]]]:
        return lambda i: (f"{PROFILES_API}/user_id:{users[i % len(users)]}/{route}", {})

    api_runs = {
        f"profile API: {route}": profile_api(route)
        for route in ("traits", "events", "external_ids", "metadata", "links")
    }
    api_runs["profile API: events (page 2)"] = lambda i: (
        f"{PROFILES_API}/user_id:{api_deep[i % len(api_deep)][0]}/events",
        {"next": api_deep[i % len(api_deep)][1]},
    )
    results: dict[str, list[float]] = {}
    per_person = (
        "profile",
        "timeline",
        "page: person",
        "page: people list (any",
        "page: people search",
        "profile API",
    )
    for name, make in [*runs.items(), *api_runs.items()]:
        if only and not name.startswith(only):
            continue
        # Whole-dataset endpoints answer the same question each time: fewer calls suffice.
        calls = count if name.startswith(per_person) else max(20, count // 5)
        headers = BASIC if name.startswith("profile API") else None
        timed(min(5, calls), make, http, headers)  # warm caches and code paths
        results[name] = timed(calls, make, http, headers)
        p50, p95 = percentile(results[name], 50), percentile(results[name], 95)
        print(f"  {name:<26} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms", flush=True)
    rounds = []
    for _ in range(200):
        started = time.perf_counter()
        client.query("SELECT 1")
        rounds.append((time.perf_counter() - started) * 1000)
    results["SELECT 1"] = rounds
    return results


@contextmanager
def data_directory(path: str | None, keep: bool) -> Iterator[Path]:
    directory = Path(path) if path else Path(tempfile.mkdtemp(prefix="feedhouse-read-bench-"))
    try:
        yield directory
    finally:
        if not keep:
            close_clients()
            shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=scaled(200_000), help="events to generate")
    parser.add_argument("--profiles", type=int, default=0, help="people in the stream (default events/10)")
    parser.add_argument("--samples", type=int, default=300, help="requests per endpoint")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", help="chDB data directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory, reuse it next time")
    parser.add_argument("--only", default="", help="comma-separated prefixes of the figures to measure")
    parser.add_argument(
        "--load-only", action="store_true", help="load the dataset (with --keep), measure nothing"
    )
    parser.add_argument(
        "--optimize", action="store_true", help="OPTIMIZE ... FINAL every table first (fully merged data)"
    )
    args = parser.parse_args()
    profiles = args.profiles or max(1, args.events // 10)
    result = Result("read_api", params={"events": args.events, "profiles": profiles, "samples": args.samples})
    with data_directory(args.data_dir, args.keep) as directory:
        settings: Settings = settings_module.load({}, data_dir=directory, read_token=TOKEN)
        client = get_client(settings)
        migrate(client, database_for(settings))
        stored = int(client.query("SELECT count() FROM events").result_rows[0][0])
        if stored == 0:
            print(f"loading {args.events:,} events / {profiles:,} profiles into {directory}", flush=True)
            seconds = load(client, args.events, profiles, args.seed)
            result.details["load_seconds"] = round(seconds, 1)
            print(f"  loaded in {seconds:.0f} s", flush=True)
        else:
            print(f"reusing {stored:,} events in {directory}", flush=True)
        result.details["tables"] = {
            str(table): {"rows": int(rows), "parts": int(parts)}
            for table, rows, parts in client.query(
                "SELECT table, sum(rows), count() FROM system.parts"
                " WHERE active AND database = currentDatabase() GROUP BY table ORDER BY table"
            ).result_rows
        }
        if args.load_only:
            return
        if args.optimize:
            started = time.perf_counter()
            for (table,) in client.query(
                "SELECT name FROM system.tables"
                " WHERE database = currentDatabase() AND engine LIKE '%MergeTree'"
            ).result_rows:
                client.command(f"OPTIMIZE TABLE `{table}` FINAL")
            result.details["optimize_seconds"] = round(time.perf_counter() - started, 1)
            print(f"  every table merged in {result.details['optimize_seconds']} s", flush=True)
        result.params["optimized"] = args.optimize
        inputs = samples(client, args.samples, args.seed)
        lanes = Lanes(lambda lane: get_client(settings, f"app-{lane}"))  # as the server makes them
        app = Starlette(
            routes=read_routes(settings, lambda: client, lanes=lanes)
            + app_routes(settings, lambda: client, lanes)
        )
        with TestClient(app) as http:
            signed = http.post("/login", data={"token": TOKEN}, follow_redirects=False)
            if signed.status_code != 303:
                raise SystemExit(f"could not sign in to the app: {signed.status_code}")
            latencies = measure(client, http, inputs, args.samples, tuple(filter(None, args.only.split(","))))
    floor = percentile(latencies.pop("SELECT 1"), 50)
    for name, values in latencies.items():
        for label, q in (("p50", 50), ("p95", 95)):
            result.add(
                Figure(
                    stage=name,
                    metric=f"{label} latency",
                    value=percentile(values, q),
                    unit="ms",
                    ceiling=floor,
                    ceiling_label="chDB SELECT 1 p50",
                    target=TARGETS_MS.get(name) if label == "p95" else None,
                    better="lower",
                )
            )
    result.details["latencies_ms"] = {name: sorted(values) for name, values in latencies.items()}
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
