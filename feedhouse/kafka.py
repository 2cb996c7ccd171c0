"""Kafka client configuration and topic management, shared by every component.

One place decides how Feedhouse talks to Kafka: the producer is idempotent with ``acks=all``
and compression on; consumers use a short session timeout (Tansu completes a group join only
after half of it) and never auto-commit, because every consumer here commits only after its
work is durable elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from feedhouse import metrics
from feedhouse.settings import Settings

# librdkafka's own log lines go through logging (JSON lines) instead of raw stderr.
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic Feedhouse owns: its logical name and partition count."""

    name: str
    partitions: int
    config: tuple[tuple[str, str], ...] = ()


COMPACTED = (("cleanup.policy", "compact"),)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic the pipeline needs, with the partition counts its consumers expect."""
    n = settings.events_partitions
    retained = (("retention.ms", str(int(settings.kafka_retention_hours * 3_600_000))),)
    return [
        TopicSpec("events", n, retained),
        TopicSpec("rejected", max(1, n // 4), retained),
        TopicSpec("dead-letter", 1),
        # Identity router -> Faust agents. Commands are keyed like events (by id), so they
        # co-partition with them; the graph is one partition so that merges are sequenced.
        TopicSpec("identity-commands", n, retained),
        TopicSpec("identity-graph", 1, retained),
        # Identity agents -> sink -> ClickHouse.
        TopicSpec("identity-mapping", n),
        TopicSpec("identity-profiles", n),
        TopicSpec("identity-state", n),
        TopicSpec("identity-groups", n),
        # Privacy (privacy/): compacted, one partition each, read whole by every process that needs them.
        TopicSpec("regulations", 1, COMPACTED),
        TopicSpec("suppressions", 1, COMPACTED),
        TopicSpec("deletions", 1, COMPACTED),
    ]


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": settings.kafka_linger_ms,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 200000,
        # Bounds how long a client waits for a verdict while the broker is unreachable.
        "message.timeout.ms": settings.produce_timeout_ms,
        "logger": LIBRDKAFKA_LOG,
        "socket.connection.setup.timeout.ms": min(settings.produce_timeout_ms, 5000),
        "reconnect.backoff.max.ms": 1000,
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group_id: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.kafka_session_timeout_ms,
        "heartbeat.interval.ms": settings.kafka_heartbeat_interval_ms,
        "fetch.wait.max.ms": 100,
        "logger": LIBRDKAFKA_LOG,
        "reconnect.backoff.max.ms": 1000,
    }
    config.update(overrides)
    return config


def admin_client(settings: Settings) -> AdminClient:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "socket.connection.setup.timeout.ms": 5000,
        "logger": LIBRDKAFKA_LOG,
    }
    return AdminClient(config)


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] | None = None, timeout: float = 10.0
) -> None:
    """Create missing topics with their partition counts; existing topics are left alone.

    Topics are created explicitly because brokers that auto-create on produce (Tansu, Kafka
    with auto.create.topics.enable) pick their own partition count, and consumers that
    co-partition by key (Faust) refuse a mismatch.
    """
    admin = admin_client(settings)
    wanted = list(specs if specs is not None else topic_specs(settings))
    existing = admin.list_topics(timeout=timeout).topics
    missing = [
        NewTopic(
            settings.topic(spec.name),
            num_partitions=spec.partitions,
            replication_factor=settings.replication_factor,
            config=dict(spec.config),
        )
        for spec in wanted
        if settings.topic(spec.name) not in existing
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # a concurrent creator won the race
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc


def record_consumer_lag(consumer: Consumer, group_id: str) -> None:
    """Set the consumer-lag gauge of every assigned partition (cached watermarks: no I/O)."""
    try:
        assignment = consumer.assignment()
        positions = consumer.position(assignment) if assignment else []
    except KafkaException:
        return
    for tp in positions:
        low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high < 0:
            continue  # no fetch response yet
        position = tp.offset if tp.offset >= 0 else low
        metrics.CONSUMER_LAG.labels(group_id, tp.topic, str(tp.partition)).set(max(0, high - position))
