"""Where the identity agents publish: a confluent-kafka producer flushed before every commit.

Faust's own producer path costs ~0.1-0.2 ms of event-loop time per record; the agents publish
one to three records per command, which made producing the worker's bottleneck. The outputs
(mappings, snapshots) go through librdkafka instead, and a Faust sensor flushes it right
before Faust commits source offsets: a committed command always has its outputs in Kafka
(at-least-once, like Faust's own sends). Table changelogs take the same path
(``streams.changelog``).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Producer
from faust.sensors import Sensor

from feedhouse.kafka import producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


class Outputs:
    """The worker's output producer (one per process)."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer(producer_config(settings, **{"linger.ms": 5}))

    def publish(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        """Produce one record (``partition`` -1: by key, the librdkafka partitioner; ``value``
        None: a tombstone)."""
        while True:
            try:
                self.producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:  # local queue full: let librdkafka deliver some first
                self.producer.poll(0.05)
        self.producer.poll(0)

    def flush(self) -> None:
        """Block until every published record is acknowledged (retrying while Kafka is away)."""
        while self.producer.flush(5.0) > 0:
            log.warning("identity outputs still unacknowledged; commit waits")


class FlushOutputsBeforeCommit(Sensor):
    """Faust sensor: source offsets are committed only after the outputs are durable."""

    def __init__(self, outputs: Outputs, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outputs = outputs

    def on_commit_initiated(self, consumer: Any) -> Any:
        # Synchronous on purpose: no agent runs while this blocks, so every acknowledged
        # event's outputs are in the producer and get flushed before the offsets are chosen.
        self.outputs.flush()
        return None
