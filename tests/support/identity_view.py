"""Test helper: the identity state as the worker published it, folded to its latest version."""

from __future__ import annotations

import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from feedhouse.avro.codec import AvroCodec
from feedhouse.kafka import consumer_config
from feedhouse.settings import Settings

TOPICS = {
    "identity-mapping": ("id_mapping", "id"),
    "identity-state": ("id_state", "id"),
    "identity-groups": ("group_state", "groupId"),
}
VOLATILE = ("version", "updatedAt")


class IdentityView:
    """Reads identity-mapping / -state / -groups from the start; the highest version per key wins."""

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer(consumer_config(settings, f"test-view-{uuid.uuid4().hex[:8]}"))
        self.codecs = {
            settings.topic(name): (AvroCodec(schema), key) for name, (schema, key) in TOPICS.items()
        }
        self.latest: dict[str, dict[str, dict[str, Any]]] = {topic: {} for topic in self.codecs}
        self.names = {settings.topic(name): name for name in TOPICS}
        assignment = []
        for topic in self.codecs:
            partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
            assignment += [TopicPartition(topic, p, 0) for p in partitions]
        self.consumer.assign(assignment)

    def close(self) -> None:
        self.consumer.close()

    def refresh(self) -> IdentityView:
        while True:
            messages = self.consumer.consume(1000, 0.3)
            if not messages:
                return self
            for message in messages:
                if message.error():
                    continue
                topic = message.topic() or ""
                codec, key_field = self.codecs[topic]
                record = codec.decode(message.value() or b"")
                table = self.latest[topic]
                known = table.get(record[key_field])
                if known is None or known["version"] <= record["version"]:
                    table[record[key_field]] = record

    def _table(self, name: str) -> dict[str, dict[str, Any]]:
        return next(table for topic, table in self.latest.items() if self.names[topic] == name)

    def profile(self, identifier: str) -> str:
        """The profile ``identifier`` resolves to (itself when the graph never saw it)."""
        record = self._table("identity-mapping").get(identifier)
        return record["profileId"] if record else identifier

    def mapping(self, identifier: str) -> dict[str, Any] | None:
        return self._table("identity-mapping").get(identifier)

    def state(self, identifier: str) -> dict[str, Any] | None:
        return self._table("identity-state").get(identifier)

    def group(self, group_id: str) -> dict[str, Any] | None:
        return self._table("identity-groups").get(group_id)

    def snapshot(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Everything, without the fields that legitimately differ between runs."""
        return {
            self.names[topic]: {
                key: {field: value for field, value in record.items() if field not in VOLATILE}
                for key, record in table.items()
            }
            for topic, table in self.latest.items()
        }
