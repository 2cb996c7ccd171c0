"""The gateway's Kafka producer: publish a request's records and await every acknowledgement.

A request is answered 200 only after Kafka acknowledged all its records (``acks=all``,
idempotent producer). confluent-kafka reports deliveries on whichever thread calls ``poll``;
a dedicated thread polls and hands each request's verdict back to the event loop once, when its
last record is acknowledged or failed.

An idempotent producer can enter a *fatal* state (e.g. ``UNKNOWN_PRODUCER_ID`` after the broker
lost its state); it is unusable from then on. The publisher notices (``error_cb`` and delivery
errors), fails the affected requests with :class:`KafkaUnavailable` (a 503 for the client, whose
SDK retries), and builds a fresh producer for the next request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from feedhouse import metrics
from feedhouse.kafka import ensure_topics, producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # topic, key, value


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge every record in time: the client should retry later."""


class _Pending:
    """One request's outstanding records; resolved on the event loop when the last one settles."""

    __slots__ = ("error", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: KafkaError | None = None

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        # Runs on the poll thread.
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(KafkaUnavailable(f"Kafka did not acknowledge: {self.error.str()}"))


class Publisher:
    """Owns one confluent-kafka producer (rebuilt after fatal errors) and its poll thread."""

    def __init__(self, settings: Settings, producer_factory: Callable[[dict[str, Any]], Producer] = Producer):
        self._settings = settings
        self._factory = producer_factory
        self._lock = threading.Lock()
        self._fatal = False
        self._producer = self._build()
        self._running = True
        self._thread = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._thread.start()
        self._wait_budget = settings.produce_timeout_ms / 1000 + 2.0

    def _build(self) -> Producer:
        return self._factory(producer_config(self._settings, error_cb=self._on_error))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("kafka producer fatal error; rebuilding producer", extra={"error": error.str()})
            self._fatal = True
        else:
            log.warning("kafka client error", extra={"error": error.str()})

    def _poll_forever(self) -> None:
        while self._running:
            if self._fatal:
                try:
                    self._recover()
                except KafkaUnavailable:
                    time.sleep(0.5)
                    continue
            try:
                self._producer.poll(0.05)
            except KafkaException as exc:
                # confluent-kafka raises fatal errors from poll(); the thread must outlive them.
                error = exc.args[0] if exc.args else None
                if not isinstance(error, KafkaError) or error.fatal():
                    self._fatal = True
                log.error("kafka poll failed", extra={"error": str(exc)})
                time.sleep(0.05)

    def _recover(self) -> None:
        """Replace a fatally failed producer. Topics are re-ensured: an empty broker lost them."""
        with self._lock:
            if not self._fatal:
                return
            old = self._producer
            try:
                ensure_topics(self._settings, timeout=2.0)
            except Exception as exc:  # broker still unreachable: stay fatal, answer 503 meanwhile
                raise KafkaUnavailable(f"Kafka unreachable while recovering: {exc}") from exc
            self._producer = self._build()
            self._fatal = False
            metrics.PRODUCER_REBUILDS.inc()
        # Whatever the old producer still holds fails back to its requests (503s).
        old.purge()
        old.flush(0)

    async def publish(self, records: Sequence[Record]) -> None:
        """Produce ``records`` and return once Kafka acknowledged all of them.

        Raises :class:`KafkaUnavailable` when any record was not acknowledged within the
        configured produce timeout, or the producer failed fatally.
        """
        if not records:
            return
        if self._fatal:
            await asyncio.to_thread(self._recover)
        loop = asyncio.get_running_loop()
        pending = _Pending(loop, len(records))
        callback = pending.on_delivery
        started = time.perf_counter()
        deadline = started + self._wait_budget
        producer = self._producer
        for topic, key, value in records:
            while True:
                try:
                    producer.produce(topic, value, key, on_delivery=callback)
                    break
                except KafkaException as exc:  # a fatal producer refuses new records
                    self._fatal = True
                    raise KafkaUnavailable(f"Kafka producer failed: {exc}") from exc
                except BufferError:
                    # Local queue full: backpressure. Wait for the poll thread to drain it.
                    if time.perf_counter() > deadline:
                        raise KafkaUnavailable("Kafka producer queue stayed full") from None
                    await asyncio.sleep(0.005)
        try:
            await asyncio.wait_for(pending.future, timeout=max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            raise KafkaUnavailable("Kafka did not acknowledge in time") from None
        finally:
            if pending.error is not None and pending.error.fatal():
                self._fatal = True
            metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    def reachable(self, timeout: float = 1.0) -> bool:
        """Whether the broker answers a metadata request now (readiness)."""
        if self._fatal:
            try:
                self._recover()
            except KafkaUnavailable:
                return False
        try:
            self._producer.list_topics(timeout=timeout)
        except Exception:
            return False
        return True

    def close(self, timeout: float = 5.0) -> None:
        self._running = False
        self._thread.join(timeout=1.0)
        self._producer.flush(timeout)
