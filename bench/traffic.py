"""Generated Segment traffic and the Kafka side of the benchmarks: produce, read, committed offsets."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from feedhouse.avro.codec import AvroCodec
from feedhouse.gateway.ingest import partition_key
from feedhouse.gateway.normalize import normalize
from feedhouse.ids import DEFAULT_PLACEHOLDERS as PLACEHOLDERS
from feedhouse.kafka import consumer_config, producer_config
from feedhouse.settings import Settings
from tests.support.datagen import StreamGenerator

# ---- generated traffic -----------------------------------------------------------------------


def segment_calls(count: int, seed: int = 7, profiles: int | None = None) -> list[dict[str, Any]]:
    """``count`` Segment calls from :class:`StreamGenerator` (about 500 bytes of JSON each)."""
    stream = StreamGenerator(seed=seed, profiles=profiles or max(100, count // 10))
    return [next(stream) for _ in range(count)]


def normalized(calls: Iterable[dict[str, Any]], received_at: int | None = None) -> list[dict[str, Any]]:
    """The gateway's event records for ``calls`` (as ``gateway.normalize`` makes them)."""
    stamp = received_at if received_at is not None else time.time_ns() // 1000
    return [normalize(call, event_type=None, received_at=stamp, source_id="bench") for call in calls]


def encoded(records: Iterable[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """(Kafka key, Avro value) of each event record, exactly as the gateway publishes them."""
    codec = AvroCodec("event")
    return [(partition_key(record, PLACEHOLDERS), codec.encode(record)) for record in records]


@dataclass
class Produced:
    """What :func:`produce` wrote: end offsets by partition, and the timed part's rate."""

    ends: dict[int, int]
    timed_records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.timed_records / self.seconds if self.seconds else 0.0


def produce(
    current: Settings,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    warmup: int = 200,
    chunk: int | None = None,
) -> Produced:
    """Produce ``records`` with the product's producer config; wait for every acknowledgement.

    The first ``warmup`` records are produced and flushed before the clock starts (connection
    and metadata round trips). With ``chunk``, every ``chunk`` records are flushed before the
    next are queued (a slow broker then never holds more than that many past their timeout).
    End offsets (last acknowledged offset + 1) come from the
    delivery reports (Tansu's watermarks are not exact); the time runs from the first timed
    produce to the last acknowledgement.
    """
    producer = Producer(producer_config(current))
    ends: dict[int, int] = {}
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
            return
        partition = message.partition()
        ends[partition] = max(ends.get(partition, 0), message.offset() + 1)

    def send(chunk: Sequence[tuple[bytes, bytes]]) -> None:
        for key, value in chunk:
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.01)
            producer.poll(0)
        if producer.flush(120) or failures:
            raise RuntimeError(f"produce: unacknowledged or failed records: {failures[:3]}")

    warm = min(warmup, len(records) // 10)
    send(records[:warm])
    started = time.perf_counter()
    step = chunk or len(records)
    for start in range(warm, len(records), step):
        send(records[start : start + step])
    return Produced(ends, len(records) - warm, time.perf_counter() - started)


def consume_all(
    current: Settings,
    topic: str,
    expected: int = 0,
    timeout: float = 120.0,
    handle: Callable[[Message], object] | None = None,
) -> tuple[int, float, dict[int, int]]:
    """Read ``topic`` from the beginning with a raw confluent consumer (assigned, no group join).

    Returns (records read, seconds from the first record to the last, end offset per
    partition as read: last offset + 1). Stops at ``expected`` records; with ``expected`` 0,
    0.2 s after every partition reached the high watermark it had when the read started
    (Tansu's watermark is the base offset of the last record batch + 1: the rest of that
    batch is read, not guessed; the topic may keep growing meanwhile). ``handle`` sees every
    record.
    """
    consumer = Consumer(consumer_config(current, f"bench-reader-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        highs = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        count, first, last = 0, 0.0, 0.0
        ends: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        reached_at: list[float] = []

        def more() -> bool:
            if expected:
                return count < expected
            if not reached_at and all(ends.get(p, 0) >= high for p, high in highs.items()):
                reached_at.append(time.monotonic())
            return not reached_at or time.monotonic() - reached_at[0] < 0.2

        while more() and time.monotonic() < deadline:
            messages = consumer.consume(10_000, 0.1)
            for message in messages:
                if message.error() is not None:
                    continue
                if not count:
                    first = time.perf_counter()
                count += 1
                ends[message.partition() or 0] = (message.offset() or 0) + 1
                if handle is not None:
                    handle(message)
            if messages:
                last = time.perf_counter()
        return count, (last - first) if count else 0.0, ends
    finally:
        consumer.close()


class OffsetWatcher:
    """Reads a consumer group's committed offsets (without joining the group)."""

    def __init__(self, current: Settings, group: str) -> None:
        self.group = group
        self.consumer = Consumer(consumer_config(current, group))

    def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """partition -> committed offset (0 when nothing is committed yet)."""
        asked = [TopicPartition(topic, p) for p in partitions]
        found = self.consumer.committed(asked, timeout=10)
        return {tp.partition: max(0, tp.offset) for tp in found}

    def total(self, topic: str, partitions: Iterable[int]) -> int:
        return sum(self.committed(topic, partitions).values())

    def close(self) -> None:
        self.consumer.close()


class CommitTracker:
    """Samples a group's committed offsets on some topics from a thread, every ``interval`` s.

    :meth:`reached` finds the first sample at or past given end offsets, so the moment a group
    caught up is known to within ``interval`` even if the ends are learnt later.
    """

    def __init__(self, current: Settings, group: str, topics: Sequence[str], interval: float = 0.1) -> None:
        self.watcher = OffsetWatcher(current, group)
        self.partitions = {topic: partitions_of(current, topic) for topic in topics}
        self.interval = interval
        self.samples: list[tuple[float, dict[str, dict[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"commits-{group}", daemon=True)

    def start(self) -> CommitTracker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self.watcher.close()

    def __enter__(self) -> CommitTracker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = {topic: self.watcher.committed(topic, parts) for topic, parts in self.partitions.items()}
            self.samples.append((time.perf_counter(), seen))
            self._stop.wait(self.interval)

    def latest(self) -> dict[str, dict[int, int]]:
        return self.samples[-1][1] if self.samples else {t: {} for t in self.partitions}

    def reached(self, ends: dict[str, dict[int, int]]) -> float | None:
        """perf_counter time of the first sample with every partition committed at or past ``ends``."""
        for moment, seen in list(self.samples):
            if all(seen[topic].get(p, 0) >= end for topic, parts in ends.items() for p, end in parts.items()):
                return moment
        return None

    def wait_reached(
        self, ends: dict[str, dict[int, int]], timeout: float, check: Callable[[], object] | None = None
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            moment = self.reached(ends)
            if moment is not None:
                return moment
            if time.monotonic() > deadline:
                raise TimeoutError(f"offsets not committed within {timeout:.0f} s: {self.latest()} < {ends}")
            if check is not None:
                check()
            time.sleep(self.interval)

    def progress(self, ends: dict[str, dict[int, int]]) -> list[tuple[float, int]]:
        """(perf_counter time, records committed up to ``ends`` over all its topics) per sample."""
        return [
            (
                moment,
                sum(min(seen[t].get(p, 0), end) for t, parts in ends.items() for p, end in parts.items()),
            )
            for moment, seen in list(self.samples)
        ]


def partitions_of(current: Settings, topic: str) -> list[int]:
    consumer = Consumer(consumer_config(current, f"bench-meta-{uuid.uuid4().hex[:8]}"))
    try:
        return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    finally:
        consumer.close()
