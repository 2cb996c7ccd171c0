"""What keeping the embedded broker's data costs, and how long a restart with data takes.

    python -m bench.persistence [--seconds 10] [--events 200000]

1. **Ingest with persistence against without**, in one run: for the broker on memory storage
   (the ceiling) and on disk (Tansu's ``s3://`` engine on ``feedhouse.objectstore``): events
   produced from a Python loop with the product's producer configuration, and
   ``feedhouse gateway --workers 2`` under ``/v1/batch`` load (100 events per request); events/s
   and the CPU microseconds per event of the broker and of the object store.
2. **Start-up with data stored**: ``feedhouse dev`` on disk storage is filled with ``--events``
   generated events (produced to the events topic, then processed by the identity worker and
   the sink until every consumer group caught up), stopped with Ctrl-C, and started again:
   seconds until ``/readyz`` answers 200, and until a new event sent then is in its timeline
   (every group rejoined, the identity tables recovered from their changelogs).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import READ_TOKEN, WRITE_KEY, Figure, Result, print_table, scaled, stop_on_sigterm
from bench.gateway_throughput import batch_bodies, gateway_child
from bench.loadgen import basic_auth, run_load
from bench.processes import Child, CpuMeter, wait_http_ok
from bench.traffic import encoded, normalized, produce, segment_calls
from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker, free_port
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings


def ingest(
    storage: str, records: list[tuple[bytes, bytes]], bodies: list[bytes], seconds: float
) -> dict[str, Any]:
    """Produce rate and gateway batch rate on a fresh broker with ``storage``."""
    with tempfile.TemporaryDirectory(prefix=f"bench-persist-{storage}-") as tmp:
        workdir = Path(tmp)
        disk = workdir / "broker" if storage == "disk" else None
        with EmbeddedBroker(log_path=workdir / "tansu.log", disk=disk) as broker:
            current = settings_module.load(
                {},
                kafka_bootstrap_servers=broker.bootstrap,
                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                data_dir=workdir / "data",
                write_keys=(WRITE_KEY,),
                read_token=READ_TOKEN,
                log_level="WARNING",
            )
            ensure_topics(current)
            assert broker.process is not None
            processes = {"tansu": broker.process.pid}
            if broker.store is not None:
                processes["object store"] = broker.store.pid
            with CpuMeter(processes) as produce_cpu:
                produced = produce(current, current.topic("events"), records)
            gateway = gateway_child(current, workdir, 2)
            with gateway:
                wait_http_ok(f"{gateway.url}/readyz", gateway)
                headers = {"Authorization": basic_auth(WRITE_KEY)}
                run_load(f"{gateway.url}/v1/batch", bodies, seconds=1, connections=4, headers=headers)
                with CpuMeter({"gateway": gateway.pid, **processes}) as batch_cpu:
                    load = run_load(
                        f"{gateway.url}/v1/batch", bodies, seconds=seconds, connections=8, headers=headers
                    )
        batch_rate = load.ok_rps * 100
        print(f"{storage}: produce {produced.rate:,.0f} events/s ({produce_cpu.line()})")
        print(f"{storage}: gateway /v1/batch {batch_rate:,.0f} events/s ({batch_cpu.line()})")
        return {
            "produce_rate": produced.rate,
            "batch_rate": batch_rate,
            "produce_us": {label: produce_cpu.micros_per(label, produced.rate) for label in processes},
            "batch_us": {label: batch_cpu.micros_per(label, batch_rate) for label in processes},
            "cores": {"produce": produce_cpu.to_json(), "batch": batch_cpu.to_json()},
        }


def dev_child(current: Settings, workdir: Path) -> Child:
    child = Child.feedhouse("dev", ["dev"], current, workdir)
    child.url = f"http://127.0.0.1:{current.http_port}"
    return child


def caught_up(current: Settings) -> bool:
    report = httpx.get(
        f"http://127.0.0.1:{current.http_port}/v1/status",
        headers={"Authorization": f"Bearer {current.admin_token}"},
        timeout=60,
    ).json()
    lags = report.get("lag", {})
    return bool(lags) and all(isinstance(info, dict) and info.get("total") == 0 for info in lags.values())


def restart(events: int) -> dict[str, Any]:
    """Fill a dev stack with ``events``, stop it, and time its start with that data."""
    # ignore_cleanup_errors: a stopped object store may still be removing its temporaries.
    with tempfile.TemporaryDirectory(prefix="bench-persist-restart-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        current = settings_module.load(
            {},
            http_port=free_port(),
            kafka_port=free_port(),
            broker_disk_port=free_port(),
            data_dir=workdir / "data",
            write_keys=(WRITE_KEY,),
            read_token=READ_TOKEN,
            log_level="WARNING",
        )
        kafka = dataclasses.replace(current, kafka_bootstrap_servers=f"127.0.0.1:{current.kafka_port}")
        calls = segment_calls(events, seed=5, profiles=max(100, events // 10))
        records = encoded(normalized(calls))
        dev = dev_child(current, workdir)
        wait_http_ok(f"{dev.url}/readyz", dev, timeout=120)
        started = time.monotonic()
        produce(kafka, kafka.topic("events"), records, chunk=20_000)
        deadline = time.monotonic() + 1800
        while not caught_up(current):
            dev.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not catch up within 30 minutes")
            time.sleep(2)
        filled = time.monotonic() - started
        print(f"filled with {events:,} events in {filled:.1f} s (produce, identity, sink)")
        dev.process.send_signal(signal.SIGINT)
        dev.process.wait(timeout=120)
        dev.stop()
        sizes = {
            part.name: sum(f.stat().st_size for f in part.rglob("*") if f.is_file())
            for part in (workdir / "data").iterdir()
        }

        dev = dev_child(current, workdir)
        started = time.monotonic()
        wait_http_ok(f"{dev.url}/readyz", dev, timeout=600)
        ready = time.monotonic() - started
        marker = f"restart-{uuid.uuid4().hex}"
        body = orjson.dumps({"userId": "restart-probe", "event": "Probe", "messageId": marker})
        response = httpx.post(
            f"{dev.url}/v1/track",
            content=body,
            auth=(WRITE_KEY, ""),
            timeout=30,
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        while True:
            timeline = httpx.get(
                f"{dev.url}/v1/profiles/restart-probe/timeline",
                headers={"Authorization": f"Bearer {READ_TOKEN}"},
                timeout=30,
            )
            if timeline.status_code == 200 and any(
                e["messageId"] == marker for e in timeline.json()["events"]
            ):
                break
            dev.check()
            if time.monotonic() - started > 900:
                raise RuntimeError("the probe event never showed after the restart")
            time.sleep(0.25)
        flowing = time.monotonic() - started
        dev.stop()
        print(f"restart with {events:,} events: ready in {ready:.1f} s, new event shown in {flowing:.1f} s")
        return {
            "events": events,
            "fill_seconds": filled,
            "ready_seconds": ready,
            "flowing_seconds": flowing,
            "bytes": sizes,
        }


def run(args: argparse.Namespace) -> Result:
    result = Result("persistence", params={"seconds": args.seconds, "events": args.events})
    calls = segment_calls(50_000, seed=9)
    records = encoded(normalized(calls))
    bodies = batch_bodies(calls[:20_000], 100)
    memory = ingest("memory", records, bodies, args.seconds)
    disk = ingest("disk", records, bodies, args.seconds)
    result.details["ingest"] = {"memory": memory, "disk": disk}
    result.add(
        Figure(
            "persistence",
            "produce, broker on disk",
            disk["produce_rate"],
            "events/s",
            ceiling=memory["produce_rate"],
            ceiling_label="broker on memory, same run",
        )
    )
    result.add(
        Figure(
            "persistence",
            "gateway /v1/batch, broker on disk",
            disk["batch_rate"],
            "events/s",
            ceiling=memory["batch_rate"],
            ceiling_label="broker on memory, same run",
        )
    )
    if args.events:
        restarted = restart(args.events)
        result.details["restart"] = restarted
        result.add(
            Figure(
                "persistence",
                f"dev restart with {args.events:,} events stored: ready",
                restarted["ready_seconds"],
                "s",
                better="lower",
            )
        )
        result.add(
            Figure(
                "persistence",
                f"dev restart with {args.events:,} events stored: new event visible",
                restarted["flowing_seconds"],
                "s",
                better="lower",
            )
        )
    return result


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=scaled(10))
    parser.add_argument(
        "--events", type=int, default=scaled(200_000), help="events stored before the restart (0: skip)"
    )
    args = parser.parse_args()
    result = run(args)
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
