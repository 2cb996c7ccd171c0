"""Gateway against a real broker: what a 200 promises, rejected events, keys, readiness."""

from __future__ import annotations

import gzip
import hashlib
import hmac

import httpx
import orjson
import pytest

from feedhouse.settings import Settings
from tests.conftest import GatewayProcess, wait_until
from tests.support.kafka_reader import KafkaReader

pytestmark = pytest.mark.integration
AUTH = ("dev-write-key", "")


def test_a_200_means_the_event_is_in_kafka(gateway: GatewayProcess, reader: KafkaReader) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/track", json={"userId": "u1", "event": "Paid", "messageId": "m-1"}, auth=AUTH
    )
    assert response.status_code == 200
    [(key, event)] = reader.read_keyed("events", 1, timeout=5)
    assert (key, event["messageId"], event["event"]) == (b"u1", "m-1", "Paid")


def test_batch_rejections_are_kept_with_their_reason(gateway: GatewayProcess, reader: KafkaReader) -> None:
    batch = {
        "batch": [
            {"type": "track", "anonymousId": "a1", "event": "Viewed", "messageId": "ok-1"},
            {"type": "track", "anonymousId": "a1", "messageId": "bad-1"},
            {"type": "alias", "userId": "u1", "messageId": "bad-2"},
            {"type": "identify", "userId": "u1", "anonymousId": "a1", "messageId": "ok-2"},
        ]
    }
    body = gzip.compress(orjson.dumps(batch))
    response = httpx.post(
        f"{gateway.url}/v1/import", content=body, auth=AUTH, headers={"Content-Encoding": "gzip"}
    )
    assert response.status_code == 200 and response.json()["accepted"] == 2
    accepted = reader.read_keyed("events", 2)
    assert sorted(event["messageId"] for _, event in accepted) == ["ok-1", "ok-2"]
    assert {key for key, _ in accepted} == {b"a1", b"u1"}
    rejected = {r["index"]: r for r in reader.read("rejected", 2)}
    assert rejected[1]["code"] == "missing_event" and "event" in rejected[1]["message"]
    assert rejected[2]["code"] == "missing_previous_id"
    assert orjson.loads(rejected[2]["payload"])["messageId"] == "bad-2"
    assert rejected[1]["path"] == "/v1/import"


def test_placeholder_user_id_is_not_the_partition_key(gateway: GatewayProcess, reader: KafkaReader) -> None:
    event = {"userId": "undefined", "anonymousId": "device-9", "event": "x"}
    assert httpx.post(f"{gateway.url}/v1/track", json=event, auth=AUTH).status_code == 200
    [(key, stored)] = reader.read_keyed("events", 1)
    assert key == b"device-9" and stored["userId"] == "undefined"  # stored as sent, keyed by the real id


def test_webhook_delivery_from_segment(gateway: GatewayProcess, reader: KafkaReader) -> None:
    events = [{"type": "page", "anonymousId": "a", "name": "Home", "messageId": f"seg-{i}"} for i in range(3)]
    body = orjson.dumps(events)
    signature = hmac.new(b"hook-secret", body, hashlib.sha1).hexdigest()
    response = httpx.post(
        f"{gateway.url}/v1/webhook",
        content=body,
        headers={
            "Authorization": "Bearer hook-key",
            "X-Signature": signature,
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 200
    assert sorted(e["messageId"] for e in reader.read("events", 3)) == ["seg-0", "seg-1", "seg-2"]


def test_ready_once_every_part_answers(gateway: GatewayProcess, settings: Settings) -> None:
    wait_until(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, what="ready")
    ready = httpx.get(f"{gateway.url}/readyz").json()
    assert ready["status"] == "ready" and ready["failing"] == [], ready
    assert {"kafka", "clickhouse", "suppressions", "regulations"} <= set(ready["components"]), ready
