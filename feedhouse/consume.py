"""The one consume -> batch -> write -> commit loop, shared by the sink and the identity router.

At-least-once: a batch's offsets are committed (synchronously) only after its :class:`Stage`
made its work durable and every message it could not process is on the dead-letter topic. A
crash in between replays the batch; both stages write idempotently (ReplacingMergeTree rows,
identity commands applied as assignments), so a replay changes nothing.

While a write is being retried the loop neither commits nor consumes more: it pauses its
partitions and keeps polling (so the group keeps it and rebalances are served); anything that
still arrives is carried to the next batch. A revocation during a retry abandons the batch
(the next owner consumes it again); a revocation between batches writes and commits what is
held, once, inside the callback.

Why hand-written and not sentry-arroyo's strategies (Reduce + CommitOffsets do the same job):
arroyo wraps every message in its own objects and runs it through a chain of strategy calls,
which measured several times this loop's per-message cost on the sink's path (docs/benchmarks.md,
"Consume loops"), where Python time per row is the sink's ceiling.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from feedhouse import metrics
from feedhouse.dead_letters import DeadLetter, DeadLetterError, DeadLetters
from feedhouse.kafka import consumer_config, record_consumer_lag
from feedhouse.retry import Abandoned, Backoff, Wait, retry
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # longest a stop request waits for the loop to notice it
LAG_EVERY_SECONDS = 2.0

P = TypeVar("P")


@dataclass(slots=True)
class Batch(Generic[P]):
    """What was consumed since the last commit: the stage's payload, offsets, rejected messages.

    Full at ``max_messages`` messages or ``max_seconds`` after its first one (``clock`` is
    injectable for tests).
    """

    payload: P
    max_messages: int
    max_seconds: float
    clock: Callable[[], float] = time.monotonic
    rejected: list[DeadLetter] = field(default_factory=list)
    messages: int = 0
    # (topic, partition) -> (first offset, last offset) seen in this batch.
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    opened_at: float | None = None

    def __len__(self) -> int:
        return self.messages

    def track(self, message: Message) -> None:
        """Count ``message`` in the batch (its offset is committed with it)."""
        if self.opened_at is None:
            self.opened_at = self.clock()
        self.messages += 1
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        known = self.ranges.get(key)
        self.ranges[key] = (offset if known is None else known[0], offset)

    def reject(self, message: Message, error: str) -> None:
        """Set ``message`` aside for the dead-letter topic (committed like the rest)."""
        self.rejected.append(DeadLetter.of(message, error))

    def remaining(self) -> float:
        """Seconds until the batch is due; ``max_seconds`` while it is empty."""
        if self.opened_at is None:
            return self.max_seconds
        return max(0.0, self.opened_at + self.max_seconds - self.clock())

    def due(self) -> bool:
        return self.messages >= self.max_messages or (self.messages > 0 and self.remaining() <= 0)

    def offsets(self) -> list[TopicPartition]:
        """What to commit once the batch is written: the offset after the last one, per partition."""
        return [
            TopicPartition(topic, partition, last + 1)
            for (topic, partition), (_, last) in sorted(self.ranges.items())
        ]

    def token(self, name: str) -> str:
        """A deterministic deduplication token for ``name``'s part of this batch.

        Derived from the offsets, so the same batch retried (same messages, same order) carries
        the same token and a store that deduplicates by it drops the repeat.
        """
        span = ",".join(f"{t}/{p}/{first}-{last}" for (t, p), (first, last) in sorted(self.ranges.items()))
        return f"{name}:{hashlib.sha256(span.encode()).hexdigest()[:32]}"


class Stage(Protocol[P]):
    """What a consumer does with its messages; the loop owns batching, retries and commits."""

    def open(self) -> P:
        """A new, empty payload for the next batch."""
        ...

    def add(self, message: Message, batch: Batch[P]) -> None:
        """Decode ``message`` into ``batch.payload``, or ``batch.reject`` it."""
        ...

    def write(self, batch: Batch[P], wait: Wait) -> None:
        """Make the batch's work durable (retrying through ``wait``; it may reject more)."""
        ...

    def discard(self) -> None:
        """A batch was abandoned uncommitted: forget what the stage remembers of it."""
        ...


class BatchConsumer(Generic[P]):
    """Runs a :class:`Stage` over ``topics`` in consumer group ``group_id`` until stopped."""

    def __init__(
        self,
        settings: Settings,
        stage: Stage[P],
        *,
        component: str,
        group_id: str,
        topics: Sequence[str],
        max_messages: int,
        max_seconds: float,
        fetch_max: int = 10_000,
        backoff: Backoff | None = None,
        consumer_overrides: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.component = component
        self.group_id = group_id
        self.topics = list(topics)
        self.max_messages = max_messages
        self.max_seconds = max_seconds
        self.fetch_max = fetch_max
        self.backoff = backoff or Backoff()
        self.consumer_overrides = consumer_overrides or {}
        self.dead_letters = DeadLetters(settings, component)
        self.assigned = threading.Event()  # set once the group gave this consumer partitions
        self.processed = 0  # messages committed so far
        self._batch = self._new_batch()
        self._carry: list[Message] = []  # consumed while waiting for a retry; next batch's
        self._paused: list[TopicPartition] = []
        self._flushing = False
        self._generation = 0  # bumped when partitions are revoked: a flush in progress gives up
        self._stop = threading.Event()
        self._lag_at = 0.0
        # For health checks: when the loop last polled, since when a write has been retried.
        self.last_poll = time.monotonic()
        self.retrying_since: float | None = None

    def _new_batch(self) -> Batch[P]:
        return Batch(self.stage.open(), self.max_messages, self.max_seconds)

    def set_batch_seconds(self, seconds: float) -> None:
        """Change how long batches gather, from the next one on (a stage that paces itself)."""
        self.max_seconds = seconds
        if not len(self._batch):
            self._batch.max_seconds = seconds

    # ---- main loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then write and commit what was consumed, and return."""
        self._stop = stop
        consumer = Consumer(consumer_config(self.settings, self.group_id, **self.consumer_overrides))
        consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info(f"{self.component} started", extra={"group": self.group_id, "topics": self.topics})
        try:
            while not stop.is_set():
                self._poll(consumer)
                if self._batch.due():
                    self._flush(consumer)
                self._report_lag(consumer)
            self._await_assignment(consumer)
            if len(self._batch):
                self._flush(consumer)  # one attempt: wait() refuses once stop is set
        finally:
            consumer.close()
            self.dead_letters.close()
            log.info(f"{self.component} stopped", extra={"group": self.group_id})

    def _await_assignment(self, consumer: Consumer) -> None:
        # Tansu wedges a group for good when a member leaves while the group is still joining:
        # a consumer stopped right after it started first waits (bounded) for its assignment.
        deadline = time.monotonic() + self.settings.kafka_session_timeout_ms / 1000
        while not self.assigned.is_set() and time.monotonic() < deadline:
            self._poll(consumer)

    def health(self, stall_seconds: float = 10.0) -> tuple[bool, str]:
        """(ok, detail): not ok while a write has been retried for ``stall_seconds``."""
        now = time.monotonic()
        if self.retrying_since is not None and now - self.retrying_since > stall_seconds:
            return False, f"retrying a write for {now - self.retrying_since:.0f} s (see its log)"
        if now - self.last_poll > 60:
            return False, f"no poll for {now - self.last_poll:.0f} s"
        return True, f"{self.processed} messages committed"

    def _poll(self, consumer: Consumer) -> None:
        self.last_poll = time.monotonic()
        if self._carry:
            messages, self._carry = self._carry, []
        else:
            room = max(1, self._batch.max_messages - len(self._batch))
            timeout = min(self._batch.remaining(), POLL_SECONDS)
            messages = consumer.consume(min(room, self.fetch_max), timeout)
        batch, add = self._batch, self.stage.add
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error", extra={"error": str(error)})
                continue
            batch.track(message)
            add(message, batch)

    # ---- writing a batch -----------------------------------------------------------------

    def _flush(self, consumer: Consumer, *, can_wait: bool = True) -> None:
        batch, self._batch = self._batch, self._new_batch()
        if not len(batch):
            return
        generation = self._generation
        self._flushing = True
        started = time.perf_counter()

        def wait(seconds: float) -> bool:
            return can_wait and self._wait(consumer, seconds, generation)

        try:
            self.stage.write(batch, wait)
            if batch.rejected:
                retry(
                    lambda: self.dead_letters.send(batch.rejected),
                    what="dead letters",
                    retry_on=lambda exc: isinstance(exc, DeadLetterError),
                    wait=wait,
                    backoff=self.backoff,
                )
            retry(
                lambda: consumer.commit(offsets=batch.offsets(), asynchronous=False),
                # The work is durable; if this commit never happens it is replayed, and the
                # stage's idempotent writes absorb the repeat.
                what="commit",
                retry_on=lambda exc: isinstance(exc, KafkaException),
                wait=wait,
                backoff=self.backoff,
            )
        except Abandoned:
            self.stage.discard()
            log.warning(
                "batch abandoned before commit: it will be consumed again",
                extra={"component": self.component, "records": len(batch), "partitions": _partitions(batch)},
            )
            return
        finally:
            self._flushing = False
            self.retrying_since = None
            self._resume(consumer)
        self.processed += len(batch)
        metrics.child(metrics.BATCH_MESSAGES, self.component).observe(len(batch))
        if log.isEnabledFor(logging.DEBUG) or batch.rejected:
            log.info(
                "batch committed",
                extra={
                    "component": self.component,
                    "records": len(batch),
                    "dead_letters": len(batch.rejected),
                    "partitions": _partitions(batch),
                    "seconds": round(time.perf_counter() - started, 4),
                },
            )

    def _wait(self, consumer: Consumer, seconds: float, generation: int) -> bool:
        """Sleep ``seconds`` while staying in the group; False when the flush must give up."""
        if self.retrying_since is None:
            self.retrying_since = time.monotonic()
        if not self._paused:
            # Paused partitions fetch nothing, so polling here only serves heartbeats and
            # rebalance callbacks. Anything that still arrives (a partition assigned during the
            # wait) is kept for the next batch, never dropped.
            self._paused = list(consumer.assignment())
            consumer.pause(self._paused)
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set() or self._generation != generation:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self.last_poll = time.monotonic()
            message = consumer.poll(min(left, 0.2))
            if message is not None:
                self._carry.append(message)

    def _resume(self, consumer: Consumer) -> None:
        if not self._paused:
            return
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        still_ours = [tp for tp in self._paused if (tp.topic, tp.partition) in owned]
        self._paused = []
        if still_ours:
            consumer.resume(still_ours)

    # ---- group membership ----------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"group": self.group_id, "partitions": _names(partitions)})
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"group": self.group_id, "partitions": _names(partitions)})
        if self._flushing:
            self._generation += 1  # the flush waiting for a retry abandons its batch
            return
        if len(self._batch):
            # Still ours for the length of this callback: write and commit now, one attempt
            # (no retries: polling is not allowed inside a rebalance callback).
            self._flush(consumer, can_wait=False)
        self._generation += 1

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, a commit would be refused.
        log.warning("partitions lost", extra={"group": self.group_id, "partitions": _names(partitions)})
        self._generation += 1
        self.stage.discard()
        self._batch = self._new_batch()

    # ---- metrics -------------------------------------------------------------------------

    def _report_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        record_consumer_lag(consumer, self.group_id)


def _partitions(batch: Batch[Any]) -> dict[str, list[int]]:
    """topic/partition -> [first, last] offset of a batch, for logs."""
    return {f"{topic}/{part}": [first, last] for (topic, part), (first, last) in batch.ranges.items()}


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}/{p.partition}" for p in partitions]
