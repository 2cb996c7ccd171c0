"""Broker down: 503 with Retry-After, never a 200; broker back: the gateway recovers by itself."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedhouse.broker import EmbeddedBroker
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from tests.conftest import GatewayProcess, wait_until
from tests.support.kafka_reader import KafkaReader

pytestmark = pytest.mark.integration
AUTH = ("dev-write-key", "")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


def test_outage_gives_503_then_recovers(
    own_broker: EmbeddedBroker, settings: Settings, tmp_path: Path
) -> None:
    current = dataclasses.replace(
        settings, kafka_bootstrap_servers=own_broker.bootstrap, produce_timeout_ms=2000
    )
    ensure_topics(current)
    gateway = GatewayProcess(current, tmp_path / "gateway.log")
    try:
        url = f"{gateway.url}/v1/track"
        assert httpx.post(url, json={"userId": "u", "event": "before"}, auth=AUTH).status_code == 200

        own_broker.stop()
        response = httpx.post(url, json={"userId": "u", "event": "during"}, auth=AUTH, timeout=30)
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        assert response.json()["code"] == "kafka_unavailable"
        assert httpx.get(f"{gateway.url}/readyz", timeout=30).status_code == 503

        own_broker.start()  # same port, empty memory storage: the old producer id is unknown now

        def delivered() -> bool:
            reply = httpx.post(
                url, json={"userId": "u", "event": "after", "messageId": "after-1"}, auth=AUTH, timeout=30
            )
            assert reply.status_code in (200, 503), reply.text  # never anything else
            return reply.status_code == 200

        wait_until(delivered, timeout=60, interval=0.5)
        with KafkaReader(current) as reader:
            events = reader.read("events", 1)
        assert [e["messageId"] for e in events] == [
            "after-1"
        ]  # the restarted broker holds what we got 200 for
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
    finally:
        gateway.stop()
