"""The publisher's promises, through its producer factory: 200 only after every acknowledgement.

A fake producer stands in for librdkafka (pure unit tests; the real broker, its outages and
the fatal UNKNOWN_PRODUCER_ID are in tests/integration/test_broker_outage.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from feedhouse import settings as settings_module
from feedhouse.gateway.publisher import KafkaUnavailable, Publisher

RECORDS = [("t.events", b"u-1", b"one"), ("t.events", b"u-2", b"two")]


class FakeProducer:
    """Queues delivery reports and hands them out on ``poll``, like librdkafka."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.produced: list[tuple[str, bytes, bytes | None]] = []
        self.reports: list[tuple[Callable[..., None], KafkaError | None]] = []
        self.fail_with: KafkaError | None = None  # every delivery fails with this
        self.silent = False  # never report (a broker that swallows requests)
        self.full_for = 0  # produce() raises BufferError this many times first
        self.refuse: KafkaException | None = None  # produce() raises this (a fatal producer)
        self.reachable = True
        self.purged = False

    def produce(self, topic: str, value: bytes, key: bytes | None, on_delivery: Callable[..., None]) -> None:
        if self.refuse is not None:
            raise self.refuse
        if self.full_for:
            self.full_for -= 1
            raise BufferError("Local: Queue full")
        self.produced.append((topic, value, key))
        if not self.silent:
            self.reports.append((on_delivery, self.fail_with))

    def poll(self, _timeout: float) -> int:
        reports, self.reports = self.reports, []
        for callback, error in reports:
            callback(error, None)
        return len(reports)

    def flush(self, _timeout: float = 0) -> int:
        self.poll(0)
        return 0

    def purge(self) -> None:
        self.purged = True

    def list_topics(self, timeout: float) -> object:
        if not self.reachable:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        return object()

    def fatal(self) -> None:
        """What librdkafka does on a fatal idempotence error: report it through error_cb."""
        self.config["error_cb"](KafkaError(KafkaError._FATAL, "fatal: UNKNOWN_PRODUCER_ID", fatal=True))


class Factory:
    def __init__(self) -> None:
        self.built: list[FakeProducer] = []

    def __call__(self, config: dict[str, Any]) -> FakeProducer:
        self.built.append(FakeProducer(config))
        return self.built[-1]


def publisher(factory: Factory, timeout_ms: int = 3000) -> Publisher:
    current = settings_module.load({}, produce_timeout_ms=timeout_ms)
    return Publisher(current, factory, create_topics=lambda _settings: None)  # type: ignore[arg-type]


def test_the_producer_is_idempotent_with_acks_all() -> None:
    factory = Factory()
    publisher(factory)
    config = factory.built[0].config
    assert config["enable.idempotence"] is True and config["acks"] == "all"
    assert config["message.timeout.ms"] == 3000


def test_publish_returns_once_every_record_is_acknowledged() -> None:
    factory = Factory()
    active = publisher(factory)
    asyncio.run(active.publish(RECORDS))
    assert factory.built[0].produced == [("t.events", b"one", b"u-1"), ("t.events", b"two", b"u-2")]
    assert factory.built[0].reports == [], "every delivery report was served"


def test_one_failed_delivery_fails_the_whole_request() -> None:
    factory = Factory()
    active = publisher(factory)
    factory.built[0].fail_with = KafkaError(KafkaError._MSG_TIMED_OUT)
    with pytest.raises(KafkaUnavailable, match="did not acknowledge"):
        asyncio.run(active.publish(RECORDS))


def test_a_full_local_queue_is_backpressure_not_an_error() -> None:
    factory = Factory()
    active = publisher(factory)
    factory.built[0].full_for = 3
    asyncio.run(active.publish(RECORDS))
    assert len(factory.built[0].produced) == 2


def test_a_report_that_never_comes_expires_with_a_503() -> None:
    factory = Factory()
    active = publisher(factory, timeout_ms=10)  # waits the timeout plus the watchdog's slack
    factory.built[0].silent = True
    with pytest.raises(KafkaUnavailable, match="in time"):
        asyncio.run(active.publish(RECORDS))


def test_a_fatal_producer_is_replaced_before_the_next_request() -> None:
    factory = Factory()
    active = publisher(factory)
    first = factory.built[0]
    first.refuse = KafkaException(KafkaError(KafkaError._FATAL, "fatal", fatal=True))
    with pytest.raises(KafkaUnavailable, match="producer failed"):
        asyncio.run(active.publish(RECORDS))
    asyncio.run(active.publish(RECORDS))  # served by a new producer
    assert len(factory.built) == 2 and first.purged
    assert factory.built[1].produced and not first.produced


def test_a_fatal_error_reported_by_librdkafka_rebuilds_the_producer() -> None:
    factory = Factory()
    active = publisher(factory)
    factory.built[0].fatal()
    asyncio.run(active.publish(RECORDS))
    assert len(factory.built) == 2 and len(factory.built[1].produced) == 2


def test_recovery_waits_for_the_broker_and_answers_503_meanwhile() -> None:
    factory = Factory()
    current = settings_module.load({})
    attempts: list[int] = []

    def broker_down(_settings: object) -> None:
        attempts.append(1)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    active = Publisher(current, factory, create_topics=broker_down)  # type: ignore[arg-type]
    factory.built[0].fatal()
    with pytest.raises(KafkaUnavailable, match="unreachable while recovering"):
        asyncio.run(active.publish(RECORDS))
    assert attempts and len(factory.built) == 1


def test_readiness_follows_the_broker() -> None:
    factory = Factory()
    active = publisher(factory)
    assert active.reachable()
    factory.built[0].reachable = False
    assert not active.reachable()
