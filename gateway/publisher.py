"""The gateway's Kafka producer: publish a request's records and await every acknowledgement.

A request is answered 200 only after Kafka acknowledged all its records (``acks=all``,
idempotent producer). confluent-kafka reports deliveries from ``poll()``; the publisher polls
on the event loop itself (every millisecond while requests wait, every 50 ms otherwise), so a
request's future is settled right where it is awaited: no poll thread, no cross-thread wake-up
per request (that design cost ~3x the CPU per single-event request; see docs/benchmarks.md).

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
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from feedhouse import metrics
from feedhouse.kafka import ensure_topics, producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

Record = tuple[str, bytes | None, bytes]  # topic, key, value
BUSY_POLL_SECONDS = 0.001
IDLE_POLL_SECONDS = 0.05


class KafkaUnavailable(RuntimeError):
    """Kafka did not acknowledge every record in time: the client should retry later."""


class _Pending:
    """One request's outstanding records; settled when the last one is reported."""

    __slots__ = ("deadline", "done", "error", "future", "remaining")

    def __init__(
        self, future: asyncio.Future[None], count: int, deadline: float, done: Callable[[_Pending], None]
    ) -> None:
        self.future = future
        self.remaining = count
        self.deadline = deadline
        self.error: KafkaError | None = None
        self.done = done

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            self.done(self)

    def settle(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(KafkaUnavailable(f"Kafka did not acknowledge: {self.error.str()}"))

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(KafkaUnavailable("Kafka did not acknowledge in time"))


class Publisher:
    """Owns one confluent-kafka producer (rebuilt after fatal errors); polled by the event loop."""

    def __init__(
        self,
        settings: Settings,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
        create_topics: Callable[[Settings], None] | None = None,
    ) -> None:
        self._settings = settings
        self._factory = producer_factory
        self._create_topics = create_topics or (lambda current: ensure_topics(current, timeout=2.0))
        self._lock = threading.Lock()
        self._fatal = False
        # Delivery callbacks run on the loop's poll, or on a thread that purges or flushes an
        # old producer: the lock makes the hand-over safe for the latter.
        self._settled: list[_Pending] = []
        self._settled_lock = threading.Lock()
        self._inflight: deque[_Pending] = deque()  # in deadline order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_busy = False
        self._running = True
        self._producer = self._build()
        self._wait_budget = settings.produce_timeout_ms / 1000 + 2.0

    def _build(self) -> Producer:
        return self._factory(producer_config(self._settings, error_cb=self._on_error))

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            log.error("kafka producer fatal error; rebuilding producer", extra={"error": error.str()})
            self._fatal = True
        else:
            log.warning("kafka client error", extra={"error": error.str()})

    def _on_settled(self, pending: _Pending) -> None:
        with self._settled_lock:
            self._settled.append(pending)

    def _settle_reported(self) -> None:
        if not self._settled:
            return
        with self._settled_lock:
            batch, self._settled = self._settled, []
        for pending in batch:
            pending.settle()

    def _tick(self) -> None:
        """Serve delivery reports and errors; fail requests past their deadline; re-arm."""
        try:
            self._producer.poll(0)
        except KafkaException as exc:  # confluent-kafka raises fatal errors from poll()
            error = exc.args[0] if exc.args else None
            if not isinstance(error, KafkaError) or error.fatal():
                self._fatal = True
            log.error("kafka poll failed", extra={"error": str(exc)})
        self._settle_reported()
        # librdkafka reports every record within message.timeout.ms (success, timeout or
        # purge); this only guards against that promise breaking, without a timer per request.
        now = time.perf_counter()
        inflight = self._inflight
        while inflight and (inflight[0].future.done() or inflight[0].deadline + 1.0 < now):
            inflight.popleft().expire()
        self._timer = None
        if self._running and self._loop is not None:
            self._arm(BUSY_POLL_SECONDS if inflight else IDLE_POLL_SECONDS)

    def _arm(self, delay: float) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(delay, self._tick)
        self._timer_busy = delay <= BUSY_POLL_SECONDS

    def _recover(self) -> None:
        """Replace a fatally failed producer. Topics are re-ensured: an empty broker lost them."""
        with self._lock:
            if not self._fatal:
                return
            old = self._producer
            try:
                self._create_topics(self._settings)
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
        if self._loop is not loop:  # first request (or a new loop in tests): poll on this loop
            self._loop = loop
            self._timer = None
        if self._timer is None or not self._timer_busy:
            # Idle until now: poll soon, so the acknowledgement is noticed within a millisecond.
            if self._timer is not None:
                self._timer.cancel()
            self._arm(BUSY_POLL_SECONDS)
        started = time.perf_counter()
        deadline = started + self._wait_budget
        pending = _Pending(loop.create_future(), len(records), deadline, self._on_settled)
        callback = pending.on_delivery
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
                    # Local queue full: backpressure. Let the loop's polls drain it.
                    if time.perf_counter() > deadline:
                        raise KafkaUnavailable("Kafka producer queue stayed full") from None
                    await asyncio.sleep(0.005)
        self._inflight.append(pending)
        try:
            await pending.future
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
        self._producer.flush(timeout)
        self._settle_reported()
