"""A compacted topic followed into memory: the latest value of every key, in every process.

Small, shared, durable state (regulations, suppressed ids, deleted ids) lives in compacted
topics: Kafka keeps the latest record per key, every process that needs the state reads the
topic from its beginning on a thread and keeps reading, so all of them converge on the same
dict, across restarts. A null value (tombstone) removes the key. :meth:`put` returns once Kafka
acknowledged the record *and* this process has read it back (read-your-writes).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from feedhouse.kafka import consumer_config, producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


class TopicTable:
    """``key -> JSON value`` of compacted topic ``name`` (logical name), kept current on a thread."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        keys_only: bool = False,
    ) -> None:
        """``keys_only``: keep every value as None, for tables where only which keys exist
        matters (each decoded JSON object costs a few hundred bytes per key, in every process)."""
        self.settings = settings
        self.topic = settings.topic(name)
        self.values: dict[str, Any] = {}
        self.loaded = threading.Event()  # the topic was read to its end once
        self._on_change = on_change
        self._keys_only = keys_only
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._read_to = 0  # offset after the last record applied (one partition)
        self._applied = threading.Condition()

    def start(self) -> TopicTable:
        self._thread = threading.Thread(target=self._follow, name=f"follow-{self.topic}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def health(self) -> tuple[bool, str]:
        if not self.loaded.is_set():
            return False, f"{self.topic} not read to its end yet"
        return True, f"{len(self.values)} entries"

    def wait_loaded(self, timeout: float) -> bool:
        return self.loaded.wait(timeout)

    # ---- writing --------------------------------------------------------------------------

    def warm_writer(self, timeout: float = 10.0) -> None:
        """Get the producer ready now: its first acknowledged write waits about half a second
        (the idempotent producer's id). It writes a tombstone of the empty key, which no entry
        has."""
        producer = self._writer()
        producer.produce(self.topic, None, b"", partition=0)
        if producer.flush(timeout):
            raise KafkaException(f"{self.topic}: not acknowledged")

    def _writer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(producer_config(self.settings))
        return self._producer

    def put_many(self, entries: dict[str, Any], timeout: float = 30.0) -> None:
        """Write ``entries`` (None deletes a key); returns once they are acknowledged and applied here."""
        if not entries:
            return
        producer = self._writer()
        errors: list[str] = []
        last: list[int] = []

        def delivered(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                last.append(message.offset())

        for key, value in entries.items():
            payload = None if value is None else orjson.dumps(value)
            producer.produce(self.topic, payload, key.encode(), partition=0, on_delivery=delivered)
            producer.poll(0)
        if producer.flush(timeout) or errors:
            raise KafkaException(f"{self.topic}: not acknowledged: {errors[:3]}")
        target = max(last) + 1
        deadline = time.monotonic() + timeout
        with self._applied:
            while self._read_to < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.topic}: written but not read back within {timeout} s")
                self._applied.wait(min(left, 0.2))

    def put(self, key: str, value: Any, timeout: float = 30.0) -> None:
        self.put_many({key: value}, timeout)

    # ---- following ------------------------------------------------------------------------

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._read()
            except KafkaException as exc:  # broker away: keep what we have, try again
                log.warning(
                    "compacted topic: broker error, retrying", extra={"topic": self.topic, "error": str(exc)}
                )
                self._stop.wait(1.0)

    def _read(self) -> None:
        group = f"{self.settings.topic_prefix}follow-{uuid.uuid4().hex[:8]}"  # assigned, never joined
        consumer = Consumer(consumer_config(self.settings, group))
        try:
            metadata = consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                raise KafkaException(f"topic {self.topic} missing")
            consumer.assign([TopicPartition(self.topic, 0, 0)])
            end = consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)[1]
            values: dict[str, Any] = {}
            while not self._stop.is_set():
                # A short wait: a writer waits for its own records to come back (read-your-writes).
                messages = consumer.consume(10_000, 0.05)
                applied = -1
                for message in messages:
                    if message.error() is not None:
                        continue
                    key = (message.key() or b"").decode()
                    raw = message.value()
                    if raw is None:
                        values.pop(key, None)
                    else:
                        values[key] = None if self._keys_only else orjson.loads(raw)
                    applied = max(applied, (message.offset() or 0) + 1)
                if applied >= 0:
                    self.values = dict(values)
                    if self._on_change is not None:
                        self._on_change(self.values)
                    with self._applied:
                        self._read_to = max(self._read_to, applied)
                        self._applied.notify_all()
                # Tansu's end offset can point into its last batch: past it, and a consume that
                # returned nothing, the whole topic has been read.
                if not messages and self._read_to >= end and not self.loaded.is_set():
                    self.loaded.set()
                    if self._on_change is not None:
                        self._on_change(self.values)
        finally:
            consumer.close()
