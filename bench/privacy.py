"""Privacy at scale: a deletion of many people, what masking costs readers, what suppression
costs ingestion.

    python -m bench.privacy [--events 1000000] [--people 1000] [--suppressed 100000]
    python -m bench.privacy --events 10000000 --data-dir /tmp/fh10m-privacy --keep
    python -m bench.privacy --ingest-only   # step 5 alone

On chDB filled with ``--events`` generated events (``tests.support.offline_pipeline``, as
``bench.read_api`` does) and a Tansu broker, in one run:

1. read latency (profile, timeline; p95 over random ids) before any deletion: the ceiling;
2. one ``SUPPRESS_WITH_DELETE`` regulation of ``--people`` people through the executor (resolve
   to every id of each person, suppress, record deletions, forget identity, lightweight-delete
   every table): seconds until nothing of them is visible;
3. the same read latency with the deletions masked (lightweight-deleted rows in the parts);
4. the purge (``APPLY DELETED MASK`` on every table): seconds until the rows are gone from disk;
5. ``feedhouse gateway --workers 2`` under ``/v1/batch`` load, gateways with an empty
   suppression list and with ``--suppressed`` ids on it taking turns: events/s, the ratio is
   what checking costs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.testclient import TestClient

from bench.common import WRITE_KEY, Figure, Result, percentile, print_table, scaled, stop_on_sigterm
from bench.gateway_throughput import batch_bodies, gateway_child
from bench.read_api import load
from bench.traffic import segment_calls
from bench.turns import gateway_settings, take_turns
from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.gateway.ingest import Ingestor, Prepared
from feedhouse.gateway.normalize import normalize
from feedhouse.kafka import ensure_topics
from feedhouse.privacy.executor import Executor, wait_for_mutations
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.regulations import parse_request
from feedhouse.privacy.suppressions import SuppressionList
from feedhouse.read.api import read_routes
from feedhouse.settings import Settings

TOKEN = "bench-read-token"


MEASURED_PASSES = 3  # one pass's p95 moved by ±10% between passes over one state


def latencies(http: TestClient, ids: list[str], passes: int = MEASURED_PASSES) -> dict[str, float | None]:
    """p95 of the read API's profile and timeline over ``passes`` passes over ``ids``."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    found: dict[str, list[float]] = {"profile": [], "timeline": []}
    for identifier in ids * passes:
        for name, path in (
            ("profile", f"/v1/profiles/{identifier}"),
            ("timeline", f"/v1/profiles/{identifier}/timeline"),
        ):
            started = time.perf_counter()
            http.get(path, headers=headers)
            found[name].append((time.perf_counter() - started) * 1000)
    return {name: percentile(values, 95) for name, values in found.items()}


WARM_UP_PASSES = 1  # a freshly opened engine, or a part just rewritten, reads cold caches first


class MaskTimes(logging.Handler):
    """Seconds each table's masks took (the executor logs each at debug level)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}
        self.ends: list[float] = []  # when each mask ended (time.time())

    def emit(self, record: logging.LogRecord) -> None:
        table = getattr(record, "table", None)
        if record.getMessage() == "masked" and table:
            self.seconds[table] = self.seconds.get(table, 0.0) + float(getattr(record, "seconds", 0.0))
            self.ends.append(record.created)

    def __enter__(self) -> MaskTimes:
        logger = logging.getLogger("feedhouse.privacy.executor")
        self._level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logger = logging.getLogger("feedhouse.privacy.executor")
        logger.removeHandler(self)
        logger.setLevel(self._level)

    def slowest(self, count: int = 8) -> str:
        ranked = sorted(self.seconds.items(), key=lambda item: -item[1])[:count]
        shown = ", ".join(f"{table} {seconds:.2f}" for table, seconds in ranked)
        return f"{sum(self.seconds.values()):.2f} in all; {shown}"


def warm_up(http: TestClient, ids: list[str]) -> None:
    latencies(http, ids, passes=WARM_UP_PASSES)


def until_none(client: Client, statement: str, what: str, timeout: float, pause: float) -> float:
    """Seconds until ``statement`` (a count) is 0, polled every ``pause`` s."""
    started = time.perf_counter()
    while client.query(statement).result_rows[0][0]:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{what} after {timeout:.0f} s")
        time.sleep(pause)
    return time.perf_counter() - started


def retire_patch_parts(client: Client, timeout: float = 120.0) -> float:
    """Seconds until no table holds an active patch part (the cleanup task retires them once
    applied; until then every read of the table does extra work for them)."""
    statement = (
        "SELECT count() FROM system.parts"
        " WHERE database = currentDatabase() AND active AND startsWith(name, 'patch-')"
    )
    return until_none(client, statement, "patch parts still active", timeout, 0.2)


def settle_merges(client: Client, timeout: float = 600.0) -> float:
    """Seconds until no background merge or mutation runs: an earlier run's purge leaves merges
    that would otherwise share the two cores with this run's deletion."""
    statement = (
        "SELECT (SELECT count() FROM system.merges WHERE database = currentDatabase())"
        " + (SELECT count() FROM system.mutations WHERE database = currentDatabase() AND NOT is_done)"
    )
    return until_none(client, statement, "merges still running", timeout, 0.5)


def users(client: Client, count: int, seed: int) -> list[str]:
    return [
        str(row[0])
        for row in client.query(
            "SELECT DISTINCT user_id FROM events WHERE startsWith(user_id, 'user-')"
            " ORDER BY cityHash64(user_id, {seed:UInt64}) LIMIT {n:UInt32}",
            parameters={"n": count, "seed": seed},
        ).result_rows
    ]


def run(args: argparse.Namespace) -> Result:
    result = Result(
        "privacy", params={"events": args.events, "people": args.people, "suppressed": args.suppressed}
    )
    keep = bool(args.data_dir and args.keep)
    workdir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench-privacy-"))
    broker = EmbeddedBroker(
        log_path=Path(tempfile.gettempdir()) / f"bench-privacy-{uuid.uuid4().hex[:6]}.log"
    ).start()
    try:
        current: Settings = settings_module.load(
            {},
            kafka_bootstrap_servers=broker.bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            data_dir=workdir,
            read_token=TOKEN,
            write_keys=(WRITE_KEY,),
            changelog_seals=True,
            log_level="WARNING",
        )
        ensure_topics(current)
        client = get_client(current)
        marker = workdir / f"loaded-{args.events}"
        migrate(client, database_for(current))
        if not marker.exists():
            seconds = load(client, args.events, max(100, args.events // 10), 7)
            print(f"loaded {args.events:,} events in {seconds:.0f} s")
            marker.write_text("ok")
        http = TestClient(Starlette(routes=read_routes(current, lambda: client)))
        victims = users(client, args.people, 11)
        readers = [u for u in users(client, 600, 23) if u not in set(victims)][:200]
        retire_patch_parts(client)  # left by an earlier run: retired once the engine is open
        print(f"background merges settled in {settle_merges(client):.1f} s")
        warm_up(http, readers)  # a freshly opened engine reads cold caches first
        before = latencies(http, readers)
        print(f"read p95 before: {before}")

        log = RegulationLog(current).start()
        executor = Executor(current, get_client(current, purpose="privacy"), log)
        executor.suppressions.start()
        executor.deleted.start()
        assert log.table.wait_loaded(30) and executor.deleted.wait_loaded(30)
        executor.warm()  # as its thread does when the process starts
        regulation = parse_request(
            {"regulationType": "SUPPRESS_WITH_DELETE", "subjectIds": victims}, time.time_ns() // 1000
        )
        # From the request (accepting it is saving it) to FINISHED, every mask a reader meets in
        # place (the regulation's own timings); the lookup tables' masks follow (privacy.executor.LOOKUPS).
        started = time.perf_counter()
        with MaskTimes() as masks:
            log.save(regulation)
            executor.execute(regulation)
        every_mask = time.perf_counter() - started
        done = log.get(regulation.id)
        assert done is not None and done.status == "FINISHED" and done.finished_at, done
        invisible = (done.finished_at - regulation.created_at) / 1e6
        still = [
            v
            for v in victims[:50]
            if http.get(f"/v1/profiles/{v}", headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 404
        ]
        assert not still, f"still visible: {still[:3]}"
        print(f"{args.people:,} people invisible after {invisible:.2f} s ({done.counts})")
        print(f"lookup tables masked too after {every_mask:.2f} s")
        print(f"slowest masks (s): {masks.slowest()}")
        gaps = [round(b - a, 2) for a, b in itertools.pairwise(masks.ends) if b - a > 0.3]
        print(f"pauses between masks over 0.3 s: {gaps}")

        # Right after: reads apply the deletion's patch parts; then the executor's background
        # rewrite puts them into the parts' row masks, the state reads are in from then on.
        during = latencies(http, readers, passes=1)  # the background APPLY PATCHES takes seconds
        print(f"read p95 right after the deletion (patch parts): {during}")
        started = time.perf_counter()
        wait_for_mutations(client)
        print(f"patches materialized in the background within {time.perf_counter() - started:.1f} s more")
        print(f"patch parts retired {retire_patch_parts(client):.1f} s after that")
        warm_up(http, readers)  # as before the deletion: the rewrite renamed every part
        after = latencies(http, readers)
        print(f"read p95 with the deletions masked: {after}")
        started = time.perf_counter()
        executor.purge_if_due(force=True)
        purged = time.perf_counter() - started
        print(f"physically removed in {purged:.1f} s")
        # The same reads with nothing masked any more, in this process after the same rewrites:
        # what "after" costs beyond "purged" is the masks' own cost.
        retire_patch_parts(client)
        warm_up(http, readers)
        clean = latencies(http, readers)
        print(f"read p95 once purged: {clean}")
        executor.suppressions.stop()
        executor.deleted.stop()
        log.stop()
        close_clients()

        result.details.update(
            {
                "regulation_counts": done.counts,
                "mask_seconds": {table: round(seconds, 3) for table, seconds in masks.seconds.items()},
                "read_before": before,
                "read_during": during,
                "read_after": after,
                "read_purged": clean,
            }
        )
        result.add(
            Figure(
                "privacy",
                f"{args.people:,} people deleted: invisible",
                invisible,
                "s",
                better="lower",
                target=5.0,
            )
        )
        result.add(
            Figure(
                "privacy",
                f"{args.people:,} people deleted: lookup tables masked too",
                every_mask,
                "s",
                better="lower",
            )
        )
        result.add(
            Figure(
                "privacy", f"{args.people:,} people deleted: physically removed", purged, "s", better="lower"
            )
        )
        for name in ("profile", "timeline"):
            result.add(
                Figure(
                    "privacy",
                    f"{name} p95 right after a deletion (patch parts)",
                    during[name],
                    "ms",
                    ceiling=before[name],
                    ceiling_label="same ids before the deletion",
                    better="lower",
                )
            )
            result.add(
                Figure(
                    "privacy",
                    f"{name} p95 with deletions masked",
                    after[name],
                    "ms",
                    ceiling=before[name],
                    ceiling_label="same ids before the deletion",
                    better="lower",
                    target=(before[name] or 0) * 1.10,
                )
            )
            result.add(
                Figure(
                    "privacy",
                    f"{name} p95 masked, against purged",
                    after[name],
                    "ms",
                    ceiling=clean[name],
                    ceiling_label="same ids once purged (same process, same rewrites)",
                    better="lower",
                )
            )
        ingest(result, workdir, args)
    finally:
        broker.close()
        close_clients()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def ingest(result: Result, workdir: Path, args: argparse.Namespace) -> None:
    """Step 5: what the suppression check costs ingestion (HTTP, and the per-event work alone)."""
    rates = suppression_cost(workdir, args)
    checks = check_cost(args.suppressed)
    print(f"gateway per-event work on one core: {checks}")
    result.details.update({"ingest": rates, "per_event_work": checks})
    result.add(
        Figure(
            "privacy",
            f"/v1/batch with {args.suppressed:,} ids suppressed",
            rates["suppressed"],
            "events/s",
            ceiling=rates["empty"],
            ceiling_label="gateways with an empty list, taking turns with them",
            target=rates["empty"] * 0.95,
        )
    )
    result.add(
        Figure(
            "privacy",
            f"gateway per-event work with {args.suppressed:,} ids suppressed (one core)",
            checks["suppressed"],
            "events/s",
            ceiling=checks["empty"],
            ceiling_label="empty suppression list, turns alternating with it",
            target=checks["empty"] * 0.95,
        )
    )
    result.add(
        Figure(
            "privacy",
            f"gateway CPU per event with {args.suppressed:,} ids suppressed",
            rates["suppressed cpu"],
            "µs",
            ceiling=rates["empty cpu"],
            ceiling_label="gateways with an empty list, taking turns with them",
            better="lower",
            target=rates["empty cpu"] * 1.05,
        )
    )


def check_cost(count: int, seconds: float = 24.0) -> dict[str, float]:
    """Events/s of the gateway's per-event work for ``/v1/batch`` (validate, the suppression
    check, encode) on one core, with an empty list and with ``count`` ids, in this process (no
    broker, no HTTP: nothing but the check differs). The check is the Ingestor's own, on a real
    SuppressionList holding the ids.

    The two sides take turns batch by batch (100 events, a few ms), in alternating order, and
    each side's time is summed: the machine's speed moved by ±10% between rounds of 0.5 s, which
    made ratios of per-round medians swing between 0.92 and 1.08 with the same code."""
    settings = settings_module.load({}, write_keys=(WRITE_KEY,), log_level="WARNING")
    batches = [orjson.loads(body)["batch"] for body in batch_bodies(segment_calls(2_000, seed=31), 100)]

    def ingestor(ids: int) -> Ingestor:
        listing = SuppressionList(settings)
        listing.ids = frozenset(f"suppressed-{n}" for n in range(ids))
        listing.table.loaded.set()
        return Ingestor(settings, None, listing, None)  # type: ignore[arg-type]  # never publishes

    sides = [("empty", ingestor(0)), ("suppressed", ingestor(count))]
    spent = dict.fromkeys((label for label, _ in sides), 0.0)
    events = dict.fromkeys(spent, 0)
    turn, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for batch in batches:
            turn += 1
            for label, side in sides if turn % 2 else reversed(sides):
                started = time.perf_counter()
                prepared = [
                    Prepared(n, item, "s", normalize(item, event_type=None, received_at=1, source_id="s"))
                    for n, item in enumerate(batch)
                ]
                for kept in side._without_suppressed(prepared):
                    side._accepted(kept.record)
                spent[label] += time.perf_counter() - started
                events[label] += len(batch)
    return {label: events[label] / spent[label] for label in spent}


def suppression_cost(workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    """/v1/batch with ``args.suppressed`` ids suppressed against an empty list: events/s and the
    gateway's CPU µs per event, from two ``feedhouse gateway --workers 2`` with the list and two
    without taking turns on one broker (``bench.turns``). One 10 s run per side on a fresh
    broker, alternating, gave ratios from 0.88 to 1.06 over nine runs."""
    bodies = batch_bodies(segment_calls(20_000, seed=31), 100)
    with contextlib.ExitStack() as stack:
        broker = EmbeddedBroker(log_path=workdir / "bench-privacy-broker.log").start()
        stack.callback(broker.close)
        gateways = []
        for number, label in enumerate(["empty", "suppressed"] * 2):
            current = gateway_settings(broker, workdir, number)
            if label == "suppressed":
                listing = SuppressionList(current).start()
                listing.suppress((f"suppressed-{n}" for n in range(args.suppressed)), "bench")
                listing.stop()
            gateways.append((label, stack.enter_context(gateway_child(current, workdir, 2))))
        sides = take_turns(gateways, bodies, 100, args.rounds)
    found: dict[str, float] = {}
    for label, side in sides.items():
        found[label], found[f"{label} cpu"] = side.rate, side.cpu_per_event
        print(
            f"gateway /v1/batch ({label}, 2 gateways, {args.rounds} turns each):"
            f" {side.rate:,.0f} events/s, {side.cpu_per_event:.1f} CPU µs/event"
        )
    return found


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=scaled(1_000_000))
    parser.add_argument("--people", type=int, default=1000)
    parser.add_argument("--suppressed", type=int, default=100_000)
    parser.add_argument(
        "--rounds", type=int, default=scaled(12, 2), help="turns of each gateway under load (2 s each)"
    )
    parser.add_argument("--data-dir", help="chDB data directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory, reuse it next time")
    parser.add_argument("--ingest-only", action="store_true", help="step 5 alone (no ClickHouse data)")
    args = parser.parse_args()
    if args.ingest_only:
        result = Result("privacy-ingest", params={"suppressed": args.suppressed, "rounds": args.rounds})
        with tempfile.TemporaryDirectory(prefix="bench-privacy-ingest-") as workdir:
            ingest(result, Path(workdir), args)
    else:
        result = run(args)
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
