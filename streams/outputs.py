"""Where the identity agents publish: a confluent-kafka producer flushed before every commit.

Faust's own producer path costs ~0.1-0.2 ms of event-loop time per record; the agents publish
one to three records per command, which made producing the worker's bottleneck. The outputs
(mappings, snapshots) go through librdkafka instead, and a Faust sensor flushes it right
before Faust commits source offsets: a committed command always has its outputs in Kafka
(at-least-once, like Faust's own sends). Table changelogs stay with Faust.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import orjson
from confluent_kafka import Producer
from faust.sensors import Sensor

from feedhouse.kafka import producer_config
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


class Outputs:
    """The worker's output producer (one per process)."""

    def __init__(self, settings: Settings) -> None:
        self.producer = Producer(producer_config(settings, **{"linger.ms": 5}))

    def publish(self, topic: str, key: bytes, value: bytes, partition: int = -1) -> None:
        """Produce one record (``partition`` -1: by key, the librdkafka partitioner)."""
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


class ChangelogTable(faust.Table):
    """A Faust table whose changelog records are produced through :class:`Outputs`.

    Faust's own changelog path (``send_soon`` into its producer buffer, one awaited aiokafka
    send per record) costs ~0.1-0.2 ms of event-loop time per write and was the identity
    worker's bottleneck. Records are the same (JSON key and value, the event's partition of
    the table's changelog topic), so Faust's recovery reads them as its own; they become
    durable before every commit through :class:`FlushOutputsBeforeCommit`.
    """

    outputs: Outputs

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)
        self.outputs.publish(
            self.changelog_topic.get_topic_name(),
            orjson.dumps(key),
            orjson.dumps(value),
            -1 if partition is None else partition,
        )
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:  # pragma: no cover - the agents never delete
        raise NotImplementedError("identity tables are never deleted from")


def changelog_table(app: faust.App, outputs: Outputs, name: str, partitions: int) -> ChangelogTable:
    """A :class:`ChangelogTable` registered with ``app`` like ``app.Table(name, ...)``."""
    table = ChangelogTable(app, name=name, default=None, partitions=partitions)
    table.outputs = outputs
    app.tables.add(table)
    return table
