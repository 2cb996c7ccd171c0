"""The embedded broker on its disk (Tansu + feedhouse.objectstore): nothing acknowledged is lost,
concurrent producers included, and everything is there after a restart."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker
from feedhouse.kafka import TopicSpec, consumer_config, ensure_topics, producer_config

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    current = settings_module.load({}, kafka_bootstrap_servers=bootstrap)
    consumer = Consumer(consumer_config(current, f"test-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values: list[bytes] = []
    idle = 0
    try:
        while idle < 3:
            messages = consumer.consume(10_000, 1.0)
            idle = 0 if messages else idle + 1
            values += [m.value() or b"" for m in messages if m.error() is None]
    finally:
        consumer.close()
    return values


def test_concurrent_producers_to_one_partition_lose_nothing_and_survive_restarts(tmp_path: Path) -> None:
    with EmbeddedBroker(disk=tmp_path / "broker", log_path=tmp_path / "broker.log") as broker:
        current = settings_module.load({}, kafka_bootstrap_servers=broker.bootstrap, topic_prefix="disk.")
        ensure_topics(current, [TopicSpec("one", 1)])
        topic = current.topic("one")
        acknowledged: list[bytes] = []
        lock = threading.Lock()

        def produce(worker: int) -> None:
            # Several producers racing for one partition: the object store's conditional writes
            # are what keeps their batches from overwriting each other.
            producer = Producer(producer_config(current, **{"linger.ms": 0}))

            def delivered(error: object, message: object) -> None:
                if error is None:
                    with lock:
                        acknowledged.append(message.value())  # type: ignore[attr-defined]

            for n in range(2000):
                producer.produce(topic, f"{worker}-{n}".encode(), on_delivery=delivered)
                producer.poll(0)
            producer.flush(60)

        threads = [threading.Thread(target=produce, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(acknowledged) == 8000
        assert sorted(read_all(broker.bootstrap, topic, 1)) == sorted(acknowledged)

        broker.stop()  # SIGKILL of the broker; its disk stays
        broker.start()
        assert sorted(read_all(broker.bootstrap, topic, 1)) == sorted(acknowledged), "lost across a restart"
