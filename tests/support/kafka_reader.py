"""Test helper: read and decode what landed on a Feedhouse topic (a real consumer, no mocks)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from feedhouse.avro.codec import AvroCodec
from feedhouse.kafka import consumer_config
from feedhouse.settings import Settings


def header_dict(message: Message) -> dict[str, str]:
    """A record's headers as text (dead letters carry theirs as UTF-8 bytes)."""
    headers: list[tuple[str, Any]] = list(message.headers() or [])  # type: ignore[arg-type]
    return {key: value.decode() if isinstance(value, bytes) else str(value) for key, value in headers}


class KafkaReader:
    """Assigns every partition of a topic from the beginning (no group join wait)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = Consumer(consumer_config(settings, f"test-reader-{uuid.uuid4().hex[:8]}"))
        self.codecs = {"events": AvroCodec("event"), "rejected": AvroCodec("rejected")}
        self._assigned: str | None = None
        self._seen: list[tuple[bytes | None, dict[str, Any]]] = []

    def __enter__(self) -> KafkaReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.consumer.close()

    def _assign(self, name: str) -> None:
        topic = self.settings.topic(name)
        if self._assigned == topic:
            return
        metadata = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, 0) for p in metadata.partitions])
        self._assigned = topic
        self._seen = []

    def read(self, name: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The first ``count`` records of topic ``name``, decoded; fails the test on timeout."""
        return [value for _, value in self.read_keyed(name, count, timeout)]

    def read_keyed(
        self, name: str, count: int, timeout: float = 20.0
    ) -> list[tuple[bytes | None, dict[str, Any]]]:
        self._assign(name)
        codec = self.codecs[name]
        deadline = time.monotonic() + timeout
        while len(self._seen) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(self._seen)} of {count} records on {name} after {timeout}s")
            for message in self.consumer.consume(500, 0.2):
                if message.error():
                    continue
                self._seen.append((message.key(), codec.decode(message.value() or b"")))
        return list(self._seen[:count])

    def nothing_more(self, name: str, seen: int, wait: float = 1.0) -> bool:
        """True when no record beyond the first ``seen`` arrives within ``wait`` seconds."""
        self._assign(name)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            for message in self.consumer.consume(500, 0.1):
                if not message.error():
                    self._seen.append((message.key(), self.codecs[name].decode(message.value() or b"")))
        return len(self._seen) <= seen
