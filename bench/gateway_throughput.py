"""Gateway throughput: ``/v1/batch`` events/s and single-event requests/s, against their ceilings.

    python -m bench.gateway_throughput [--seconds 10] [--workers 2] [--batch-size 100]

On a fresh Tansu broker, in one run:

1. ceiling (a): the same events, already normalised and Avro-encoded, produced from a Python
   loop with the gateway's producer configuration (``feedhouse.kafka.producer_config``);
2. ceiling (b): ``bench.echo_app`` (a bare Starlette route, same uvicorn settings and worker
   count) under the same load as the gateway: single ``/v1/track`` calls and ``/v1/batch``;
3. ``feedhouse gateway --workers N`` under that load (every 200 means Kafka acknowledged).

Load comes from another process: ``wrk`` (installed from Debian if missing) or the Python
generator of ``bench.loadgen``. Also printed: the gateway's per-event CPU work on one core
(JSON parse + validation + Avro, no HTTP, no Kafka), which bounds what one worker can do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import (
    ROOT,
    WRITE_KEY,
    Figure,
    Result,
    bench_stack,
    print_table,
    scaled,
    stop_on_sigterm,
)
from bench.loadgen import LoadResult, basic_auth, run_load
from bench.plots import plot_groups, plot_vs_ceiling
from bench.processes import Child, CpuMeter, child_env, wait_http_ok
from bench.profile import profiled
from bench.traffic import encoded, normalized, produce, segment_calls
from feedhouse.avro.codec import AvroCodec
from feedhouse.broker import free_port
from feedhouse.gateway.ingest import partition_key
from feedhouse.gateway.normalize import normalize
from feedhouse.ids import DEFAULT_PLACEHOLDERS as PLACEHOLDERS
from feedhouse.settings import Settings

BATCH_TARGET = 50_000  # events/s (docs/design.md, Targets)
SINGLE_SHARE_TARGET = 0.50  # of the bare echo route's requests/s (docs/design.md)


def batch_bodies(calls: list[dict[str, Any]], size: int) -> list[bytes]:
    """``{"batch": [...], "sentAt": ...}`` bodies of ``size`` calls, as the server SDKs send them."""
    bodies = []
    for start in range(0, len(calls) - size + 1, size):
        items = calls[start : start + size]
        bodies.append(orjson.dumps({"batch": items, "sentAt": items[-1]["timestamp"]}))
    return bodies


def cpu_path_rate(bodies: list[bytes], seconds: float = 2.0) -> float:
    """Events/s of the gateway's per-event CPU work on this core: parse, normalise, encode, key."""
    codec = AvroCodec("event")
    events, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for body in bodies[:20]:
            for item in orjson.loads(body)["batch"]:
                record = normalize(item, event_type=None, received_at=1, source_id="s")
                codec.encode(record)
                partition_key(record, PLACEHOLDERS)
                events += 1
    return events / (time.perf_counter() - started)


def load_both(
    server: Child,
    broker: int,
    single: list[bytes],
    batch: list[bytes],
    args: argparse.Namespace,
    profile: bool = False,
) -> tuple[LoadResult, LoadResult, dict[str, CpuMeter]]:
    """Single-call load, then batch load, on ``server``: results and cores used by each process.

    With ``profile``, py-spy records ``server`` during each load.
    """
    url = server.url
    processes = {server.label: server.pid, "tansu": broker}

    def load(path: str, bodies: list[bytes], seconds: float, connections: int) -> LoadResult:
        return run_load(
            f"{url}{path}",
            bodies,
            seconds=seconds,
            connections=connections,
            threads=args.threads,
            processes=args.threads,
            headers={"Authorization": basic_auth(WRITE_KEY)},
            tool=args.tool,
        )

    load("/v1/track", single, 1, 4)  # warm-up: connections, Kafka metadata, lazy imports
    name = server.label.split()[0]
    with (
        profiled(server.pid, f"gateway.{name}-single", profile),
        CpuMeter(processes) as cpu_one,
    ):
        one = load("/v1/track", single, args.seconds, args.connections)
    with (
        profiled(server.pid, f"gateway.{name}-batch", profile),
        CpuMeter(processes) as cpu_many,
    ):
        many = load("/v1/batch", batch, args.seconds, args.batch_connections)
    print(f"{name} cores used: single: {cpu_one.line()}\n{name} cores used: batch: {cpu_many.line()}")
    return one, many, {"single": cpu_one, "batch": cpu_many}


def echo_child(workdir: Path, workers: int) -> Child:
    """``bench.echo_app`` with ``workers`` processes on a free port."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.echo_app", "--port", str(port), "--workers", str(workers)]
    return Child.http("echo route", argv, dict(os.environ), workdir, port)


def gateway_child(current: Settings, workdir: Path, workers: int, root: Path = ROOT, **env: str) -> Child:
    """``feedhouse gateway --workers N`` configured by ``current``, on a free port, run from the
    checkout ``root`` (``python -m`` puts its working directory first on ``sys.path``).

    Its ClickHouse schema is applied first, as a deployment does: ``/readyz`` checks it.
    """
    subprocess.run(
        [sys.executable, "-m", "feedhouse.cli", "migrate"],
        env=child_env(current, **env),
        cwd=root,
        check=True,
        capture_output=True,
    )
    port = free_port()
    argv = [sys.executable, "-m", "feedhouse.cli", "gateway", "--workers", str(workers), "--port", str(port)]
    return Child.http("gateway", argv, child_env(current, **env), workdir, port, root)


def run(args: argparse.Namespace) -> Result:
    result = Result(
        "gateway",
        params={
            "seconds": args.seconds,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "connections_single": args.connections,
            "connections_batch": args.batch_connections,
            "produce_events": args.events,
        },
    )
    calls = segment_calls(max(args.events, 200 * args.batch_size), seed=21)
    single = [orjson.dumps(call) for call in calls if call["type"] == "track"][:5000]
    batch = batch_bodies(calls[: 200 * args.batch_size], args.batch_size)
    records = encoded(normalized(calls[: args.events]))
    with bench_stack("gateway") as (current, workdir, broker):
        assert broker.process is not None
        broker_pid = broker.process.pid
        produced = produce(current, current.topic("events"), records)
        produce_rate = produced.rate
        print(f"ceiling (a) raw confluent produce: {produce_rate:,.0f} events/s ({len(records):,} events)")
        cpu_rate = cpu_path_rate(batch)
        print(f"gateway CPU path on one core (parse + normalise + Avro): {cpu_rate:,.0f} events/s")

        with echo_child(workdir, args.workers) as echo:
            wait_http_ok(f"{echo.url}/healthz", echo)
            echo_single, echo_batch, echo_cpu = load_both(echo, broker_pid, single, batch, args)
            echo.memory()
        print(f"echo: single {echo_single.ok_rps:,.0f} req/s, batch {echo_batch.ok_rps:,.0f} req/s")

        gateway = gateway_child(current, workdir, args.workers)
        with gateway:
            wait_http_ok(f"{gateway.url}/readyz", gateway)
            gw_single, gw_batch, gw_cpu = load_both(gateway, broker_pid, single, batch, args, args.profile)
            gateway.memory()
        print(f"gateway: single {gw_single.ok_rps:,.0f} req/s, batch {gw_batch.ok_rps:,.0f} req/s")

    batch_rate = gw_batch.ok_rps * args.batch_size
    echo_batch_rate = echo_batch.ok_rps * args.batch_size
    result.add(
        Figure(
            "gateway",
            f"/v1/batch ({args.batch_size}/req), {args.workers} workers",
            batch_rate,
            "events/s",
            ceiling=produce_rate,
            ceiling_label="raw confluent produce",
            target=BATCH_TARGET,
        )
    )
    result.add(
        Figure(
            "gateway",
            f"/v1/batch ({args.batch_size}/req), {args.workers} workers",
            batch_rate,
            "events/s",
            ceiling=echo_batch_rate,
            ceiling_label="echo route, same bodies",
        )
    )
    result.add(
        Figure(
            "gateway",
            f"single /v1/track, {args.workers} workers",
            gw_single.ok_rps,
            "req/s",
            ceiling=echo_single.ok_rps,
            ceiling_label="echo route",
            target=SINGLE_SHARE_TARGET * echo_single.ok_rps,
            note="target: 50% of the echo route in the same run",
        )
    )
    for pct in ("p50", "p99"):
        result.add(
            Figure(
                "gateway",
                f"single /v1/track latency {pct} ({args.connections} conns)",
                getattr(gw_single, f"{pct}_ms"),
                "ms",
                ceiling=getattr(echo_single, f"{pct}_ms"),
                ceiling_label="echo route",
                better="lower",
            )
        )
    for pct in ("p50", "p99"):
        result.add(
            Figure(
                "gateway",
                f"/v1/batch latency {pct} ({args.batch_connections} conns)",
                getattr(gw_batch, f"{pct}_ms"),
                "ms",
                ceiling=getattr(echo_batch, f"{pct}_ms"),
                ceiling_label="echo route",
                better="lower",
            )
        )
    result.memory = gateway.memory_seen + echo.memory_seen
    result.details = {
        "load_tool": gw_single.tool,
        "cpu_path_events_per_s_one_core": round(cpu_rate),
        "raw_produce": {"events": produced.timed_records, "seconds": round(produced.seconds, 3)},
        "cpu": {
            "echo": {phase: meter.to_json() for phase, meter in echo_cpu.items()},
            "gateway": {phase: meter.to_json() for phase, meter in gw_cpu.items()},
            "us_per_request_single": {
                "echo": echo_cpu["single"].micros_per("echo route", echo_single.ok_rps),
                "gateway": gw_cpu["single"].micros_per("gateway", gw_single.ok_rps),
            },
            "us_per_event_batch": {
                "echo": echo_cpu["batch"].micros_per("echo route", echo_batch_rate),
                "gateway": gw_cpu["batch"].micros_per("gateway", batch_rate),
                "tansu": gw_cpu["batch"].micros_per("tansu", batch_rate),
            },
            "us_per_event_cpu_path_one_core": round(1e6 / cpu_rate, 1),
        },
        "echo_single": echo_single.to_json(),
        "echo_batch": echo_batch.to_json(),
        "gateway_single": gw_single.to_json(),
        "gateway_batch": gw_batch.to_json(),
        "avg_event_json_bytes": round(sum(len(b) for b in single) / max(1, len(single))),
    }
    for name, load in (("gateway single", gw_single), ("gateway batch", gw_batch)):
        if load.errors:
            print(f"WARNING: {name}: {load.errors} of {load.requests} requests were not 2xx")
    plot_vs_ceiling(result, f"Gateway ({args.workers} workers) vs ceilings")
    plot_groups(
        result,
        "gateway_latency.png",
        "Gateway latency vs bare echo route",
        {
            "echo single": {"p50": echo_single.p50_ms, "p99": echo_single.p99_ms},
            "gateway single": {"p50": gw_single.p50_ms, "p99": gw_single.p99_ms},
            "echo batch": {"p50": echo_batch.p50_ms, "p99": echo_batch.p99_ms},
            "gateway batch": {"p50": gw_batch.p50_ms, "p99": gw_batch.p99_ms},
        },
        "ms",
    )
    return result


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=scaled(10), help="per load run (BENCH_SCALE x 10)")
    parser.add_argument(
        "--events", type=int, default=scaled(100_000), help="events for the raw-produce ceiling"
    )
    parser.add_argument("--workers", type=int, default=2, help="gateway (and echo) worker processes")
    parser.add_argument("--batch-size", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--connections", type=int, default=32, help="connections for single calls")
    parser.add_argument("--batch-connections", type=int, default=8, help="connections for batches")
    parser.add_argument("--threads", type=int, default=1, help="load generator threads / processes")
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway during each load")
    result = run(parser.parse_args())
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
