"""What the embedded broker (Tansu) spends per event when records arrive in small batches.

    python -m bench.broker_batches [--seconds 10]

One producer trickles 50 events (470-byte values, random keys) every 10 ms, as a gateway under
steady load does; caught-up consumers, each in its own group, read them as the sink, the router
and the other followers do. For each shape (partitions of the topic, producer ``linger.ms``,
consumers) a fresh in-memory Tansu is started, and its CPU is measured over the run: µs of broker
CPU per event produced. The ceiling is the same broker producing and then consuming the same
number of events in bulk (large batches). This is why ``feedhouse dev`` creates its topics with
few partitions and lingers longer (``feedhouse.dev.embedded_shape``, docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.common import Figure, Result, print_table, stop_on_sigterm
from bench.processes import CpuMeter
from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker
from feedhouse.kafka import consumer_config, ensure_topics, producer_config
from feedhouse.settings import Settings

VALUE = os.urandom(470)
# (partitions, linger.ms, consumers)
SHAPES = ((8, 2.0, 0), (8, 2.0, 1), (8, 2.0, 4), (2, 2.0, 4), (2, 25.0, 4))


@contextlib.contextmanager
def fresh(**overrides: Any) -> Iterator[tuple[EmbeddedBroker, Settings]]:
    """A fresh in-memory Tansu and settings on it (``overrides`` applied), topics created."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-batches-") as tmp,
        EmbeddedBroker(log_path=Path(tmp) / "tansu.log") as broker,
    ):
        current = settings_module.load(
            {},
            kafka_bootstrap_servers=broker.bootstrap,
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
            **overrides,
        )
        ensure_topics(current)
        yield broker, current


def trickle(partitions: int, linger: float, consumers: int, seconds: float) -> tuple[float, int]:
    """(broker CPU µs per event, events produced) for one shape on a fresh broker."""
    with fresh(events_partitions=partitions, kafka_linger_ms=linger) as (broker, current):
        topic = current.topic("events")
        stop = threading.Event()
        readers = [Consumer(consumer_config(current, f"reader-{n}")) for n in range(consumers)]
        for reader in readers:
            reader.subscribe([topic])

        def drain(reader: Consumer) -> None:
            while not stop.is_set():
                reader.consume(10_000, 0.1)

        threads = [threading.Thread(target=drain, args=(r,), daemon=True) for r in readers]
        for thread in threads:
            thread.start()
        producer = Producer(producer_config(current))
        for _ in range(200):  # joins and metadata before the clock starts
            producer.produce(topic, VALUE, key=uuid.uuid4().bytes)
        producer.flush(30)
        time.sleep(current.kafka_session_timeout_ms / 1000 + 1)  # Tansu joins after half of it
        assert broker.process is not None
        produced = 0
        wall = time.monotonic()
        with CpuMeter({"tansu": broker.process.pid}) as meter:
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                for _ in range(50):
                    producer.produce(topic, VALUE, key=uuid.uuid4().bytes)
                produced += 50
                producer.poll(0)
                time.sleep(0.01)
            producer.flush(30)
            time.sleep(1.0)  # the consumers read the last batches
        wall = time.monotonic() - wall
        stop.set()
        for thread in threads:
            thread.join()
        for reader in readers:
            reader.close()
        return meter.micros_per("tansu", produced / wall) or 0.0, produced


def bulk(count: int) -> float:
    """Broker CPU µs per event to take ``count`` events in large batches and serve them once."""
    with fresh() as (broker, current):
        topic = current.topic("events")
        assert broker.process is not None
        wall = time.monotonic()
        with CpuMeter({"tansu": broker.process.pid}) as meter:
            producer = Producer(producer_config(current))
            for _ in range(count):
                while True:
                    try:
                        producer.produce(topic, VALUE, key=uuid.uuid4().bytes)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.flush(60)
            reader = Consumer(consumer_config(current, "bulk-reader"))
            reader.subscribe([topic])
            got = 0
            while got < count:
                got += sum(1 for m in reader.consume(10_000, 1.0) if m.error() is None)
            reader.close()
        wall = time.monotonic() - wall
        return meter.micros_per("tansu", count / wall) or 0.0


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    result = Result("broker_batches", params={"seconds": args.seconds})
    costs = []
    for partitions, linger, consumers in SHAPES:
        micros, produced = trickle(partitions, linger, consumers, args.seconds)
        costs.append((partitions, linger, consumers, micros, produced))
        print(f"{partitions} partitions, linger {linger:g} ms, {consumers} consumers: {micros:.0f} µs/event")
    floor = bulk(costs[0][4])
    print(f"bulk produce then consume: {floor:.1f} µs/event")
    for partitions, linger, consumers, micros, _ in costs:
        result.add(
            Figure(
                "broker",
                f"Tansu CPU per event, {partitions} partitions, linger {linger:g} ms, {consumers} consumers",
                micros,
                "µs",
                ceiling=floor,
                ceiling_label="bulk produce, then consume once",
                better="lower",
            )
        )
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
