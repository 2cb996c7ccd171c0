"""Audiences end to end: ingest rate with and without 20 definitions, change freshness, window exits.

    python -m bench.audience_freshness [--rate 5000] [--steady-seconds 30] [--capacity-seconds 15]

The embedded stack of ``feedhouse dev``, each part its own process: Tansu, ``feedhouse worker``,
and ``feedhouse gateway`` hosting the sink and the audience evaluator and senders on chDB. A
webhook receiver in this process is the destination. Phases, in one run:

1. **capacity without definitions**: generated ``/v1/batch`` load as fast as the gateway takes
   it for ``--capacity-seconds``; the sustained rate is the events accepted divided by the time
   until the sink committed the last of them (as ``bench.end_to_end``);
2. 10 computed traits and 10 audiences (``bench.audience_backfill.twenty``) plus a probe audience
   and a window audience are defined, backfilled, and the destination registered; the benchmark
   waits until the evaluator has caught up and the destination's initial sync is delivered;
3. **steady**: open-loop load at ``--rate`` events/s; meanwhile probe users each send one
   ``Bench Probe`` track (the probe audience: "did Bench Probe") and are timed from the 200 to
   (a) being a member in ``GET /v1/audiences/bench_probe/members`` and (b) their ``identify``
   reaching the receiver; the figures count the probes sent while the load ran, all of them and
   those of its second half. Window probes send an event whose 1-day window passes 20 s later,
   and are timed from that moment to their ``Audience Exited`` reaching the receiver;
4. **capacity with definitions**: phase 1 again; the ratio of the two sustained rates is the
   cost of computing audiences on ingestion. The evaluator's own catch-up (its group's commits)
   is reported beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from bench.audience_backfill import twenty
from bench.common import (
    WRITE_KEY,
    Figure,
    Result,
    bench_stack,
    percentile,
    print_table,
    scaled,
    stop_on_sigterm,
)
from bench.end_to_end import event_ends, total
from bench.gateway_throughput import batch_bodies, gateway_child
from bench.loadgen import basic_auth, run_load
from bench.processes import Child, CpuMeter, wait_http_ok
from bench.profile import profiled
from bench.traffic import CommitTracker, segment_calls
from feedhouse.broker import free_port
from feedhouse.dev import EMBEDDED_LINGER_MS, EMBEDDED_PARTITIONS
from feedhouse.settings import Settings

FRESHNESS_TARGET = 2.0  # seconds, p95, HTTP 200 -> member visible / handed to the destination
WINDOW_TARGET = 60.0  # seconds from a window passing to the exit sent
PROBE = "bench_probe"
WINDOW = "bench_window"


class Receiver:
    """The destination: records when each probe user's first identify / exit arrived."""

    def __init__(self) -> None:
        self.entered: dict[str, float] = {}
        self.exited: dict[str, float] = {}
        self.messages = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                now = time.monotonic()
                receiver.take(orjson.loads(body), now)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, messages: list[dict[str, Any]], now: float) -> None:
        with self.lock:
            self.messages += len(messages)
            for message in messages:
                user = message.get("userId", "")
                if message.get("type") == "identify" and message.get("traits", {}).get(PROBE) is True:
                    self.entered.setdefault(user, now)
                if (
                    message.get("event") == "Audience Exited"
                    and message["properties"].get("audience_key") == WINDOW
                ):
                    self.exited.setdefault(user, now)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()


class Admin:
    def __init__(self, url: str, current: Settings) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {current.admin_token}"}, timeout=60
        )

    def post(self, path: str, body: dict[str, Any]) -> None:
        response = self.http.post(path, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:300]}")

    def all_live(self) -> bool:
        traits = self.http.get("/v1/traits").json()["traits"]
        audiences = [
            a for a in self.http.get("/v1/audiences").json()["audiences"] if a["computedBy"] == "feedhouse"
        ]
        return all(d["status"] == "live" for d in traits + audiences)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Probes:
    """Probe users sent at ``rate`` per second; each timed from its 200 to visible and delivered."""

    def __init__(self, url: str, current: Settings, receiver: Receiver, rate: float = 5.0) -> None:
        self.url = url
        self.receiver = receiver
        self.rate = rate
        self.sent: dict[str, float] = {}
        self.visible: dict[str, float] = {}
        self.window_sent: dict[str, float] = {}  # user -> monotonic time its window passes
        self.errors = 0
        self.run_id = uuid.uuid4().hex[:6]
        self.read_headers = {"Authorization": f"Bearer {current.read_token}"}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]

    def start(self) -> Probes:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _send(self) -> None:
        with httpx.Client(auth=(WRITE_KEY, ""), timeout=10) as client:
            index, next_at = 0, time.monotonic()
            while not self._stop.is_set():
                next_at += 1 / self.rate
                user = f"probe-{self.run_id}-{index}"
                body: dict[str, Any] = {"userId": user, "event": "Bench Probe"}
                window = index % 5 == 0
                if window:  # every fifth probe is also a window probe: its 1-day window passes in 20 s
                    body = {
                        "userId": user,
                        "event": "Bench Window",
                        "timestamp": iso(datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=20)),
                    }
                try:
                    ok = client.post(f"{self.url}/v1/track", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok and window:
                    self.window_sent[user] = time.monotonic() + 20
                elif ok:
                    self.sent[user] = time.monotonic()
                else:
                    self.errors += 1
                index += 1
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _watch(self) -> None:
        with httpx.Client(headers=self.read_headers, timeout=10) as client:
            while not self._stop.wait(0.1):  # 100 ms resolution; polls cost the stack CPU too
                try:
                    response = client.get(f"{self.url}/v1/audiences/{PROBE}/members", params={"limit": 1000})
                except httpx.HTTPError:
                    continue
                if response.status_code != 200:
                    continue
                now = time.monotonic()
                for user in response.json()["members"]:
                    self.visible.setdefault(user, now)

    def freshness(self, since: float, until: float) -> dict[str, list[float]]:
        """Seconds from the 200 to being seen of the probes sent between ``since`` and ``until``
        (monotonic: while the load ran); window probes are all counted."""
        sent = {u: t for u, t in self.sent.items() if since <= t <= until}
        read = [self.visible[u] - t for u, t in sent.items() if u in self.visible]
        delivered = [self.receiver.entered[u] - t for u, t in sent.items() if u in self.receiver.entered]
        exits = [
            self.receiver.exited[u] - t for u, t in self.window_sent.items() if u in self.receiver.exited
        ]
        return {"read_api": read, "destination": delivered, "window_exit": exits}


def destination_lag(url: str) -> float | None:
    """``feedhouse_destination_lag_changes`` summed over destinations (None: not exported yet)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "feedhouse_destination_lag_changes"
        for sample in family.samples
    ]
    return sum(values) if values else None


def settle(url: str, current: Settings, timeout: float = 600) -> float:
    """Seconds until the evaluator committed everything sent so far and the new destination's
    initial sync (every current member) was delivered: the steady phase then measures the steady
    state, not the backlog that defining 22 definitions at once leaves."""
    started = time.monotonic()
    with CommitTracker(current, f"{current.topic_prefix}audiences", [current.topic("events")]) as tracker:
        tracker.wait_reached(event_ends(current), timeout)
    while (lag := destination_lag(url)) is None or lag > 0:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"destination lag still {lag} after {timeout:.0f} s")
        time.sleep(0.25)
    return time.monotonic() - started


def capacity(
    url: str, current: Settings, bodies: list[bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """Load as fast as the gateway takes it; the sustained rate until the sink (and evaluator) caught up."""
    sink = CommitTracker(current, f"{current.topic_prefix}sink", [current.topic("events")]).start()
    evaluator = CommitTracker(current, f"{current.topic_prefix}audiences", [current.topic("events")]).start()
    try:
        before = event_ends(current)
        load = run_load(
            f"{url}/v1/batch",
            bodies,
            seconds=seconds,
            connections=connections,
            headers={"Authorization": basic_auth(WRITE_KEY)},
            tool="python",
            unique=True,
        )
        started = time.perf_counter() - load.seconds
        after = event_ends(current)
        sunk = sink.wait_reached(after, 300)
        evaluated = evaluator.wait_reached(after, 600)
    finally:
        sink.stop()
        evaluator.stop()
    events = total(after) - total(before)
    return {
        "events": events,
        "intake_events_per_s": round(load.ok_rps * 100),
        "queryable_events_per_s": round(events / (sunk - started)),
        "evaluated_events_per_s": round(events / (evaluated - started)),
        "seconds_to_evaluated": round(evaluated - started, 2),
    }


@contextlib.contextmanager
def stack(args: argparse.Namespace) -> Iterator[tuple[Settings, Child, list[Child], dict[str, int]]]:
    with bench_stack(
        "audiences",
        embedded_sink=True,
        embedded_audiences=True,
        http_workers=1,
        log_level="INFO",
        # the embedded shape, as `feedhouse dev` runs it
        events_partitions=EMBEDDED_PARTITIONS,
        kafka_linger_ms=EMBEDDED_LINGER_MS,
    ) as (
        current,
        workdir,
        broker,
    ):
        worker = Child.feedhouse(
            "identity worker", ["worker"], current, workdir, FEEDHOUSE_METRICS_PORT=str(free_port())
        )
        gateway = gateway_child(current, workdir, 1)
        gateway.label = "gateway + sink + audiences"
        assert broker.process is not None
        with worker, gateway:
            wait_http_ok(f"{gateway.url}/readyz", gateway, timeout=90)
            yield (
                current,
                gateway,
                [gateway, worker],
                {gateway.label: gateway.pid, worker.label: worker.pid, "tansu": broker.process.pid},
            )


def run(args: argparse.Namespace) -> Result:
    result = Result("audience_freshness", params=vars(args))
    bodies = batch_bodies(segment_calls(args.pool, seed=61), 100)
    with stack(args) as (current, gateway, children, processes), Receiver() as receiver:
        url = gateway.url
        # Warm up (group joins, first batches), then the capacity without definitions.
        run_load(
            f"{url}/v1/batch",
            bodies[:50],
            seconds=3,
            connections=2,
            headers={"Authorization": basic_auth(WRITE_KEY)},
            tool="python",
            rate=20,
            unique=True,
        )
        print("capacity without definitions ...", flush=True)
        with CpuMeter(processes) as cpu_without:
            without = capacity(url, current, bodies, args.capacity_seconds, args.connections)
        print(f"  {without}; cores: {cpu_without.line()}", flush=True)

        admin = Admin(url, current)
        traits, audiences = twenty()
        for body in traits:
            admin.post("/v1/traits", body)
        for body in audiences:
            admin.post("/v1/audiences", body)
        admin.post("/v1/audiences", {"key": PROBE, "when": {"event": "Bench Probe"}})
        admin.post("/v1/audiences", {"key": WINDOW, "when": {"event": "Bench Window", "within_days": 1}})
        started = time.monotonic()
        while not admin.all_live():
            if time.monotonic() - started > 600:
                raise TimeoutError("definitions not live within 600 s")
            time.sleep(0.5)
        backfill_seconds = time.monotonic() - started
        admin.post(
            "/v1/destinations",
            {"key": "bench-hook", "type": "webhook", "url": receiver.url, "secret": "bench"},
        )
        print(f"22 definitions live after {backfill_seconds:.1f} s", flush=True)
        settle_seconds = settle(url, current)
        print(f"evaluator caught up and initial sync delivered after {settle_seconds:.1f} s", flush=True)

        print(f"steady load at {args.rate:,} events/s with probes ...", flush=True)
        probes = Probes(url, current, receiver).start()
        steady_started = time.monotonic()
        with (
            profiled(gateway.pid, "audience_freshness.gateway-steady", args.profile),
            CpuMeter(processes) as cpu_steady,
        ):
            steady = run_load(
                f"{url}/v1/batch",
                bodies,
                seconds=args.steady_seconds,
                connections=args.connections,
                headers={"Authorization": basic_auth(WRITE_KEY)},
                tool="python",
                rate=args.rate / 100,
                unique=True,
            )
        steady_ended = time.monotonic()
        time.sleep(45)  # let the last window probes pass their window and their exits arrive
        probes.stop()
        print(f"  accepted {steady.ok_rps * 100:,.0f} events/s; cores: {cpu_steady.line()}", flush=True)

        print("capacity with definitions ...", flush=True)
        with CpuMeter(processes) as cpu_with:
            with_definitions = capacity(url, current, bodies, args.capacity_seconds, args.connections)
        print(f"  {with_definitions}; cores: {cpu_with.line()}", flush=True)
        for child in children:
            child.memory()
        result.memory = [row for child in children for row in child.memory_seen]
        passes = [
            orjson.loads(line)
            for line in gateway.log_path.read_text(errors="replace").splitlines()
            if '"evaluator passes"' in line
        ]
        shown = ("ts", "passes", "touched_ids", "changes", "busy_s", "slowest_s")
        for entry in passes:
            print("  evaluator:", {name: entry.get(name) for name in shown})
    # Probes sent while the load ran; the second half shows whether the evaluator keeps up (a
    # backlog grows the later probes' waits) once the first passes' warm-up is behind it.
    measured = probes.freshness(steady_started, steady_ended)
    halfway = (steady_started + steady_ended) / 2
    late = probes.freshness(halfway, steady_ended)
    result.details = {
        "without": without,
        "with": with_definitions,
        "backfill_22_seconds": round(backfill_seconds, 1),
        "settle_seconds": round(settle_seconds, 1),
        "steady_accepted_events_per_s": round(steady.ok_rps * 100),
        "probe_errors": probes.errors,
        "probes": {name: len(values) for name, values in measured.items()},
        "sent": {"probes": len(probes.sent), "window": len(probes.window_sent)},
        "cpu": {"without": cpu_without.to_json(), "steady": cpu_steady.to_json(), "with": cpu_with.to_json()},
        "freshness_s": {name: sorted(round(v, 3) for v in values) for name, values in measured.items()},
        "freshness_second_half_s": {
            name: sorted(round(v, 3) for v in values) for name, values in late.items()
        },
        "evaluator_log": passes,
    }
    result.add(
        Figure(
            "audiences",
            "sustained ingest with 10 traits + 10 audiences",
            with_definitions["queryable_events_per_s"],
            "events/s",
            ceiling=without["queryable_events_per_s"],
            ceiling_label="same stack, no definitions",
        )
    )
    result.add(
        Figure(
            "audiences",
            "evaluator keeps up with that load",
            with_definitions["evaluated_events_per_s"],
            "events/s",
            ceiling=with_definitions["queryable_events_per_s"],
            ceiling_label="sink, same phase",
        )
    )
    for name, label in (
        ("read_api", "member visible in the read API"),
        ("destination", "handed to the destination"),
    ):
        for found, when in ((measured, ""), (late, ", second half")):
            values = found[name]
            p50, p95 = percentile(values, 50), percentile(values, 95)
            result.add(
                Figure(
                    "audiences",
                    f"200 -> {label}, p95 at {args.rate:,}/s{when}",
                    None if p95 is None else p95 * 1000,
                    "ms",
                    target=FRESHNESS_TARGET * 1000,
                    better="lower",
                    note="" if p50 is None else f"p50 {p50 * 1000:.0f} ms, {len(values)} probes",
                )
            )
    exits = measured["window_exit"]
    result.add(
        Figure(
            "audiences",
            "window passed -> exit at the destination, max",
            max(exits) if exits else None,
            "s",
            target=WINDOW_TARGET,
            better="lower",
            note=f"{len(exits)} window probes",
        )
    )
    return result


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--steady-seconds", type=float, default=scaled(30))
    parser.add_argument("--capacity-seconds", type=float, default=scaled(15))
    parser.add_argument("--connections", type=int, default=8)
    # 200k generated events of 20k people, cycled with new messageIds: at 5k/s the touched
    # profiles are a realistic share of all (a 50k pool, 5k people, touches most of them each second).
    parser.add_argument("--pool", type=int, default=scaled(200_000))
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway in the steady phase")
    result = run(parser.parse_args())
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
