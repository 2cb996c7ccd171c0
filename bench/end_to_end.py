"""End to end: events/s from HTTP to queryable in ClickHouse, and freshness under load.

    python -m bench.end_to_end [--rate 20000] [--steady-seconds 20] [--capacity-seconds 15]

The embedded stack of ``feedhouse dev``, each part its own process so it can be measured: a
Tansu broker, ``feedhouse worker``, and ``feedhouse gateway`` (one worker) hosting the sink on
chDB (``FEEDHOUSE_EMBEDDED_SINK=true``). With ``FEEDHOUSE_CLICKHOUSE_URL`` set to a server, the
production shape instead: ``feedhouse sink`` on its own and ``--gateway-workers`` gateway
workers. A freshness probe (``bench.freshness``) sends marker
events at a steady rate and times each from its 200 to being visible (read API timeline, or
the sink's committed offset until the read API exists). Phases:

1. idle: markers only: the freshness floor of this stack (the ceiling of the freshness rows);
2. steady: background ``/v1/batch`` load offered at ``--rate`` events/s (open loop, new
   messageIds every pass): freshness p50/p95 against the target (p95 < 2 s);
3. capacity: the same load as fast as the gateway takes it for ``--capacity-seconds``; the
   sustained end-to-end rate is the events accepted divided by the time until the sink
   committed the last of them; its ceiling is the gateway's intake rate in the same phase.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from typing import Any

from bench.common import WRITE_KEY, Figure, Result, bench_stack, print_table, scaled, stop_on_sigterm
from bench.freshness import FreshnessProbe, read_api_available
from bench.gateway_throughput import batch_bodies, gateway_child
from bench.loadgen import LoadResult, basic_auth, run_load
from bench.plots import plot_lines, plot_vs_ceiling
from bench.processes import Child, CpuMeter, wait_http_ok
from bench.profile import profiled
from bench.traffic import CommitTracker, consume_all, segment_calls
from feedhouse.broker import free_port
from feedhouse.dev import EMBEDDED_LINGER_MS, EMBEDDED_PARTITIONS
from feedhouse.settings import Settings

RATE_TARGET = 20_000  # events/s sustained, HTTP accepted -> queryable (docs/design.md)
FRESHNESS_TARGET = 2.0  # seconds, p95


def event_ends(current: Settings) -> dict[str, dict[int, int]]:
    """End offsets of the events topic, read (Tansu's watermarks are not exact)."""
    topic = current.topic("events")
    return {topic: consume_all(current, topic, timeout=120)[2]}


def total(ends: dict[str, dict[int, int]]) -> int:
    return sum(sum(parts.values()) for parts in ends.values())


def run(args: argparse.Namespace) -> Result:
    result = Result(
        "end_to_end",
        params={
            "rate": args.rate,
            "batch_size": args.batch_size,
            "idle_seconds": args.idle_seconds,
            "steady_seconds": args.steady_seconds,
            "capacity_seconds": args.capacity_seconds,
            "marker_rate": args.marker_rate,
            "connections": args.connections,
            "partitions": args.partitions,
            "linger_ms": args.linger_ms,
        },
    )
    print(f"generating a pool of {args.pool:,} events ...", flush=True)
    bodies = batch_bodies(segment_calls(args.pool, seed=51), args.batch_size)
    # chDB: one process owns the data, so the gateway hosts the sink and has one worker (as in
    # `feedhouse dev`). With a ClickHouse server: a standalone sink and several gateway workers.
    server = bool(os.environ.get("FEEDHOUSE_CLICKHOUSE_URL"))
    workers = args.gateway_workers if server else 1
    shape = {"events_partitions": args.partitions, "kafka_linger_ms": args.linger_ms}
    with bench_stack("e2e", embedded_sink=not server, http_workers=workers, **shape) as (
        current,
        workdir,
        broker,
    ):
        mode = args.probe
        if mode == "auto":
            mode = "read-api" if read_api_available(current) else "sink-commit"
        print(f"freshness probe: {mode}; sink {'standalone' if server else 'in the gateway (chDB)'}")
        worker = Child.feedhouse(
            "identity worker", ["worker"], current, workdir, FEEDHOUSE_METRICS_PORT=str(free_port())
        )
        gateway = gateway_child(current, workdir, workers)
        children = [gateway, worker]
        if server:
            children.append(Child.feedhouse("sink", ["sink"], current, workdir))
        else:
            gateway.label = "gateway + sink"
        assert broker.process is not None
        with contextlib.ExitStack() as stack:
            for child in children:
                stack.enter_context(child)
            wait_http_ok(f"{gateway.url}/readyz", gateway, timeout=90)
            processes = {child.label: child.pid for child in children} | {"tansu": broker.process.pid}
            phases = measure(current, children, processes, mode, bodies, args)
            for child in children:
                child.memory()
    figures(result, phases, args)
    result.memory = [row for child in children for row in child.memory_seen]
    result.details = {"probe": mode, **{k: v for k, v in phases.items() if k != "markers"}}
    plot_vs_ceiling(result, "End to end vs ceilings")
    markers = phases["markers"]
    plot_lines(
        result,
        "end_to_end_freshness.png",
        f"Freshness of probe markers ({mode}); background load in 'steady' and 'capacity'",
        {
            phase: ([m[1] for m in markers if m[0] == phase], [m[2] for m in markers if m[0] == phase])
            for phase in ("idle", "steady", "drain", "capacity")
        },
        "seconds since the probe started (marker sent)",
        "seconds from 200 to visible",
        hlines={"target p95 (2 s)": FRESHNESS_TARGET},
    )
    return result


def measure(
    current: Settings,
    children: list[Child],
    processes: dict[str, int],
    mode: str,
    bodies: list[bytes],
    args: argparse.Namespace,
) -> dict[str, Any]:
    gateway = children[0]
    url = gateway.url

    def alive() -> None:
        for child in children:
            child.check()

    def load(seconds: float, rate: float | None) -> LoadResult:
        return run_load(
            f"{url}/v1/batch",
            bodies,
            seconds=seconds,
            connections=args.connections,
            headers={"Authorization": basic_auth(WRITE_KEY)},
            tool="python",
            rate=rate,
            unique=True,
        )

    sink = CommitTracker(current, f"{current.topic_prefix}sink", [current.topic("events")]).start()
    probe = FreshnessProbe(url, current, mode, rate=args.marker_rate).start()
    probe_started = time.monotonic()
    try:
        probe.wait_first_visible(90)  # the sink joined its group and wrote a first batch
        probe.phase = "idle"
        time.sleep(args.idle_seconds)

        probe.phase = "steady"
        with (
            profiled(gateway.pid, "end_to_end.gateway-steady", args.profile),
            CpuMeter(processes) as cpu_steady,
        ):
            steady = load(args.steady_seconds, args.rate / args.batch_size)
        print(f"cores used (steady): {cpu_steady.line()}")
        after_steady = event_ends(current)
        backlog = total(after_steady) - sum(
            min(sink.latest()[t].get(p, 0), end)
            for t, parts in after_steady.items()
            for p, end in parts.items()
        )
        probe.phase = "drain"
        drained = True
        try:
            sink.wait_reached(after_steady, args.drain_timeout, alive)
        except TimeoutError:
            drained = False

        probe.phase = "capacity"
        before = event_ends(current)
        with CpuMeter(processes) as cpu_capacity:
            capacity = load(args.capacity_seconds, None)
            # Timed from the load's own start (its generator processes take a moment to start).
            started = time.perf_counter() - capacity.seconds
            after = event_ends(current)
            done = sink.wait_reached(after, args.drain_timeout + args.capacity_seconds * 10, alive)
        print(f"cores used (capacity, until queryable): {cpu_capacity.line()}")
        probe.phase = "after"
    finally:
        probe.stop()
        sink.stop()
    events = total(after) - total(before)
    return {
        "idle": probe.summary("idle"),
        "steady": {
            **probe.summary("steady"),
            "offered_events_per_s": args.rate,
            "accepted_events_per_s": round(steady.ok_rps * args.batch_size),
            "load": steady.to_json(),
            "sink_backlog_at_end": backlog,
            "cpu": cpu_steady.to_json(),
            "drained": drained,
        },
        "capacity": {
            **probe.summary("capacity"),
            "events": events,
            "intake_events_per_s": round(capacity.ok_rps * args.batch_size),
            "queryable_events_per_s": round(events / (done - started)),
            "seconds_to_queryable": round(done - started, 2),
            "cpu": cpu_capacity.to_json(),
            "cpu_us_per_event": {
                label: cpu_capacity.micros_per(label, events / (done - started)) for label in processes
            },
            "load": capacity.to_json(),
        },
        "probe_errors": probe.errors,
        "markers": [
            (m.phase, m.sent - probe_started, m.freshness)
            for m in sorted(probe.markers.values(), key=lambda m: m.sent)
            if m.freshness is not None
        ],
    }


def figures(result: Result, phases: dict[str, Any], args: argparse.Namespace) -> None:
    capacity, steady, idle = phases["capacity"], phases["steady"], phases["idle"]
    result.add(
        Figure(
            "end to end",
            "sustained, HTTP 200 -> queryable (capacity phase)",
            capacity["queryable_events_per_s"],
            "events/s",
            ceiling=capacity["intake_events_per_s"],
            ceiling_label="gateway intake, same phase",
            target=RATE_TARGET,
        )
    )
    result.add(
        Figure(
            "end to end",
            f"intake under open-loop load of {args.rate:,} events/s",
            steady["accepted_events_per_s"],
            "events/s",
            ceiling=args.rate,
            ceiling_label="offered",
        )
    )
    for pct, target in (("p50", None), ("p95", FRESHNESS_TARGET)):
        value = steady[f"{pct}_s"]
        result.add(
            Figure(
                "end to end",
                f"freshness {pct} at {args.rate:,} events/s offered",
                None if value is None else value * 1000,
                "ms",
                ceiling=None if idle[f"{pct}_s"] is None else idle[f"{pct}_s"] * 1000,
                ceiling_label="same stack, no load",
                target=None if target is None else target * 1000,
                better="lower",
            )
        )


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=20_000, help="offered events/s in the steady phase")
    parser.add_argument("--steady-seconds", type=float, default=scaled(20))
    parser.add_argument("--capacity-seconds", type=float, default=scaled(15))
    parser.add_argument("--idle-seconds", type=float, default=scaled(5))
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="longest wait for the sink to catch up"
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--marker-rate", type=float, default=10.0, help="probe markers per second")
    parser.add_argument(
        "--gateway-workers", type=int, default=2, help="with a ClickHouse server only (chDB: 1)"
    )
    parser.add_argument("--pool", type=int, default=scaled(50_000), help="distinct generated events")
    # The embedded shape's own defaults (feedhouse.dev), unless asked otherwise.
    parser.add_argument(
        "--partitions", type=int, default=EMBEDDED_PARTITIONS, help="FEEDHOUSE_EVENTS_PARTITIONS"
    )
    parser.add_argument(
        "--linger-ms", type=float, default=EMBEDDED_LINGER_MS, help="FEEDHOUSE_KAFKA_LINGER_MS"
    )
    parser.add_argument("--probe", choices=("auto", "read-api", "sink-commit"), default="auto")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway in the steady phase")
    result = run(parser.parse_args())
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
