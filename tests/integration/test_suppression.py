"""Suppression at the gateway: a suppressed person's new events are answered 200 and dropped,
in every gateway worker, through the compacted topic they all follow."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from feedhouse.privacy.suppressions import SuppressionList
from feedhouse.settings import Settings
from tests.conftest import GatewayProcess, wait_until
from tests.support.kafka_reader import KafkaReader

pytestmark = pytest.mark.integration
AUTH = ("dev-write-key", "")


def metric(gateway: GatewayProcess, name: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_suppressed_ids_are_dropped_with_a_200_and_lifted_again(
    settings: Settings, gateway: GatewayProcess, reader: KafkaReader
) -> None:
    quiet, loud = f"quiet-{uuid.uuid4().hex[:6]}", f"loud-{uuid.uuid4().hex[:6]}"
    device = f"device-{uuid.uuid4().hex[:6]}"
    suppressions = SuppressionList(settings).start()
    try:
        suppressions.suppress([quiet, device], regulation="test")
        wait_until(
            lambda: metric(gateway, "feedhouse_suppressed_ids") == 2, what="the gateway follows the list"
        )

        single = httpx.post(f"{gateway.url}/v1/track", json={"userId": quiet, "event": "Hidden"}, auth=AUTH)
        assert single.status_code == 200 and single.json() == {"success": True}
        batch = httpx.post(
            f"{gateway.url}/v1/batch",
            json={
                "batch": [
                    {"type": "track", "userId": loud, "event": "Shown", "messageId": "shown-1"},
                    {"type": "page", "anonymousId": device, "name": "Hidden"},
                    {"type": "identify", "userId": quiet, "traits": {"email": "q@example.com"}},
                ]
            },
            auth=AUTH,
        )
        assert batch.status_code == 200 and batch.json() == {"success": True, "accepted": 1}
        assert metric(gateway, "feedhouse_gateway_events_suppressed_total") == 3
        events = reader.read("events", 1)
        assert [event["messageId"] for event in events] == ["shown-1"]
        assert reader.nothing_more("events", 1), "a suppressed event reached Kafka"
        # A batch without anyone suppressed passes the whole-batch check untouched.
        clean = httpx.post(
            f"{gateway.url}/v1/batch",
            json={"batch": [{"type": "track", "userId": loud, "event": "Also", "messageId": "shown-2"}]},
            auth=AUTH,
        )
        assert clean.json() == {"success": True, "accepted": 1}

        suppressions.lift([quiet])
        wait_until(
            lambda: metric(gateway, "feedhouse_suppressed_ids") == 1, what="the lift reaches the gateway"
        )
        again = httpx.post(
            f"{gateway.url}/v1/track",
            json={"userId": quiet, "event": "Back", "messageId": "back-1"},
            auth=AUTH,
        )
        assert again.status_code == 200
        assert [event["messageId"] for event in reader.read("events", 3)] == ["shown-1", "shown-2", "back-1"]
    finally:
        suppressions.stop()


def test_a_follower_keeps_the_suppressed_ids_and_not_the_records(settings: Settings) -> None:
    """Every gateway worker holds the whole list: the ids only, not each record's JSON value."""
    ids = [f"many-{uuid.uuid4().hex[:6]}-{n}" for n in range(1000)]
    writer, follower = SuppressionList(settings).start(), SuppressionList(settings).start()
    try:
        writer.suppress(ids, regulation="test")
        wait_until(lambda: len(follower.ids) >= len(ids), what="the follower reads the list")
        assert set(ids) <= follower.ids
        assert follower.suppressed(ids[-1], None) and not follower.suppressed("someone-else", None)
        kept = {type(value).__name__ for value in follower.table.values.values()}
        assert kept == {"NoneType"}, f"values kept in memory: {kept}"
        writer.lift(ids[:10])
        wait_until(lambda: len(follower.ids) == len(ids) - 10, what="the lift reaches the follower")
        assert not follower.suppressed(ids[0], None) and follower.suppressed(ids[10], None)
    finally:
        writer.stop()
        follower.stop()
