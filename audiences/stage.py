"""The evaluator's Kafka side: which ids a batch touched, and when ClickHouse has their rows.

A stage of the shared consume loop (``feedhouse.consume``) on the ``events``,
``identity-mapping`` and ``identity-state`` topics. An event's Kafka key is its person key (its
messageId when it has no real id, which names no profile) and only its type and name are
decoded (the prefix decoder): a profile is evaluated for an event only if some definition
counts that kind of event, and then only for the definitions that do (``evaluate.relevance``).
Identity records are keyed by the id they describe, and their profiles always evaluated whole
(a merge or a trait can move any definition). Before evaluating, the stage waits
until the sink's consumer group committed past every offset of the batch: the sink commits
only after its insert, so the evaluator then reads exactly the rows those records made (the
sink may run in this process or elsewhere; only its committed offsets matter). Offsets are
committed after the changes are written: a crash re-evaluates the batch, which records
nothing new (``audiences.changes``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from feedhouse.audiences.evaluator import Evaluator
from feedhouse.avro.codec import AvroDecodeError
from feedhouse.avro.event_prefix import EventPrefixDecoder
from feedhouse.consume import Batch
from feedhouse.kafka import consumer_config
from feedhouse.retry import Abandoned, Wait
from feedhouse.settings import Settings
from feedhouse.sink.consumer import GROUP_SUFFIX as SINK_GROUP_SUFFIX

TOPICS = ("events", "identity-mapping", "identity-state")
BARRIER_POLL_SECONDS = 0.05
MAX_BATCH_SECONDS = 5.0
CORE_SHARE = 0.5  # of the core it runs on, the most the evaluator takes from ingestion ...
SHARE_WINDOW_SECONDS = 10.0  # ... averaged over this long


class DutyCycle:
    """How long the evaluator rests after a pass so that its passes take at most ``share`` of
    the time over the last ``window`` seconds.

    Keeping up with steady traffic costs about the same CPU in small passes as in large ones (a
    pass's fixed cost is small beside its cost per event, docs/audiences.md), so as long as the
    evaluator stays within its share it starts the next pass as soon as a batch is due: resting
    longer would only add to every change's delay. Over its share (a burst, a backlog) it rests
    until the average is back, so ingestion keeps the rest of the core.
    """

    def __init__(self, share: float = CORE_SHARE, window: float = SHARE_WINDOW_SECONDS) -> None:
        self.share = share
        self.window = window
        self.passes: list[tuple[float, float]] = []  # (started, seconds) of recent passes

    def rest_after(self, started: float, seconds: float) -> float:
        """Seconds to rest after a pass that began at ``started`` (monotonic) and took ``seconds``."""
        ended = started + seconds
        self.passes = [(at, spent) for at, spent in self.passes if at + spent > ended - self.window]
        self.passes.append((started, seconds))
        busy = sum(spent for _, spent in self.passes)
        span = ended - min(at for at, _ in self.passes)
        return max(0.0, busy / self.share - span)


@dataclass(slots=True)
class Touched:
    """What a batch concerns: ids whose state changed (identity-state), ids whose profile changed
    (identity-mapping), and for event records each person's (type, event name) pairs."""

    ids: set[str] = field(default_factory=set)
    moved: set[str] = field(default_factory=set)
    seen: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


class SinkBarrier:
    """Waits until the sink's group committed past given offsets (reads offsets, never joins)."""

    def __init__(self, settings: Settings) -> None:
        group = f"{settings.topic_prefix}{SINK_GROUP_SUFFIX}"
        self.consumer = Consumer(consumer_config(settings, group))

    def reached(self, ends: Mapping[tuple[str, int], int]) -> bool:
        asked = [TopicPartition(topic, partition) for topic, partition in ends]
        try:
            committed = self.consumer.committed(asked, timeout=5)
        except KafkaException:
            return False
        return all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in committed)

    def wait(self, ends: Mapping[tuple[str, int], int], wait: Wait) -> None:
        while not self.reached(ends):
            if not wait(BARRIER_POLL_SECONDS):
                raise Abandoned("waiting for the sink")

    def close(self) -> None:
        self.consumer.close()


class EvaluatorStage:
    """Touched ids in, changes out (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        evaluator: Evaluator,
        barrier: SinkBarrier | None = None,
        pace: Callable[[float], None] | None = None,
    ) -> None:
        self.mapping_topic = settings.topic("identity-mapping")
        self.events_topic = settings.topic("events")
        self.decoder = EventPrefixDecoder()
        self.evaluator = evaluator
        self.barrier = barrier or SinkBarrier(settings)
        self.base_seconds = settings.audiences_batch_seconds
        self.pace = pace  # set by the runner: the consume loop's set_batch_seconds
        self.duty = DutyCycle()

    def open(self) -> Touched:
        return Touched()

    def add(self, message: Message, batch: Batch[Touched]) -> None:
        key = message.key()
        if not key:
            return
        identifier = key.decode("utf-8", "replace")
        topic = message.topic()
        if topic == self.mapping_topic:
            batch.payload.moved.add(identifier)
        elif topic == self.events_topic:
            try:
                event = self.decoder.decode(message.value() or b"")
                signature = (str(event.get("type") or ""), str(event.get("event") or ""))
            except AvroDecodeError:
                batch.payload.ids.add(identifier)  # the sink dead-letters it; evaluate to be safe
                return
            batch.payload.seen.setdefault(identifier, set()).add(signature)
        else:
            batch.payload.ids.add(identifier)

    def write(self, batch: Batch[Touched], wait: Wait) -> None:
        ends = {partition: last + 1 for partition, (_, last) in batch.ranges.items()}
        self.barrier.wait(ends, wait)
        started = time.monotonic()
        payload = batch.payload
        self.evaluator.evaluate_ids(payload.ids, payload.moved, "events", wait, seen=payload.seen)
        if self.pace is not None:
            # The next batch gathers while the evaluator rests (DutyCycle): under sustained
            # overload passes get fewer and larger (a pass's cost grows slower than its events).
            rest = self.duty.rest_after(started, time.monotonic() - started)
            self.pace(min(MAX_BATCH_SECONDS, max(self.base_seconds, rest)))

    def discard(self) -> None:
        self.evaluator.discard()
