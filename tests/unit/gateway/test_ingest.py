"""The HTTP contract of the ingestion gateway, with a recording publisher in place of Kafka."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from feedhouse.avro.codec import AvroCodec
from tests.unit.fakes import RecordingPublisher

EVENTS = AvroCodec("event")
REJECTED = AvroCodec("rejected")


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def produced(publisher: RecordingPublisher, suffix: str) -> list[dict]:
    codec = EVENTS if suffix == "events" else REJECTED
    return [codec.decode(value) for topic, _, value in publisher.records if topic.endswith(suffix)]


def test_track_with_basic_auth(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post("/v1/track", json={"userId": "u1", "event": "Signed Up"}, headers=basic("wk"))
    assert response.status_code == 200 and response.json() == {"success": True}
    [event] = produced(publisher, "events")
    assert event["event"] == "Signed Up" and event["userId"] == "u1"
    assert publisher.records[0][1] == b"u1"  # keyed by userId


def test_write_key_in_body_and_short_paths(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post(
        "/v1/p",
        content=orjson.dumps({"anonymousId": "a1", "writeKey": "wk"}),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 200
    assert produced(publisher, "events")[0]["type"] == "page"


@pytest.mark.parametrize(
    "headers",
    [{}, basic("nope"), {"Authorization": "Bearer wk"}, {"Authorization": "Basic !!!"}],
)
def test_unauthenticated_is_401_with_json_error(
    client: TestClient, publisher: RecordingPublisher, headers: dict
) -> None:
    response = client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False and body["code"] in ("unauthorized", "invalid_authorization")
    assert body["message"]
    assert publisher.records == []


def test_invalid_single_event_is_400_and_kept(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post("/v1/track", json={"userId": "u"}, headers=basic("wk"))
    assert response.status_code == 400
    assert response.json()["code"] == "missing_event"
    [kept] = produced(publisher, "rejected")
    assert kept["code"] == "missing_event" and orjson.loads(kept["payload"]) == {"userId": "u"}
    assert produced(publisher, "events") == []


def test_batch_accepts_valid_and_keeps_invalid(client: TestClient, publisher: RecordingPublisher) -> None:
    batch = {
        "batch": [
            {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}},
            {"type": "track", "userId": "u1"},
            {"type": "group", "userId": "u1", "groupId": "g1"},
            {"type": "track", "anonymousId": "a", "event": "x", "writeKey": "bad-key"},
            {"type": "track", "anonymousId": "a", "event": "y", "writeKey": "other-key"},
        ],
        "context": {"library": {"name": "test"}},
    }
    response = client.post("/v1/batch", json=batch, headers=basic("wk"))
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["accepted"] == 3
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [
        (1, "missing_event"),
        (3, "invalid_write_key"),
    ]
    accepted = produced(publisher, "events")
    assert [e["type"] for e in accepted] == ["identify", "group", "track"]
    assert all(orjson.loads(e["context"])["library"] == {"name": "test"} for e in accepted)
    assert accepted[2]["sourceId"] != accepted[0]["sourceId"]  # the item's own write key
    assert [r["index"] for r in produced(publisher, "rejected")] == [1, 3]


def test_batch_without_any_key_is_401(client: TestClient) -> None:
    response = client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "x"}]})
    assert response.status_code == 401


def test_batch_authenticated_per_item(client: TestClient, publisher: RecordingPublisher) -> None:
    response = client.post(
        "/v1/import", json={"batch": [{"type": "track", "userId": "u", "event": "x", "writeKey": "wk"}]}
    )
    assert response.status_code == 200 and len(produced(publisher, "events")) == 1


def test_batch_over_event_limit_is_400(client: TestClient, publisher: RecordingPublisher) -> None:
    items = [{"type": "track", "userId": "u", "event": "x"}] * 2501
    response = client.post("/v1/batch", json={"batch": items}, headers=basic("wk"))
    assert response.status_code == 400 and response.json()["code"] == "batch_too_large"
    assert publisher.records == []


def test_gzip_body(client: TestClient, publisher: RecordingPublisher) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "track", "userId": "u", "event": "zipped"}]}))
    headers = {**basic("wk"), "Content-Encoding": "gzip", "Content-Type": "application/json"}
    assert client.post("/v1/batch", content=body, headers=headers).status_code == 200
    assert produced(publisher, "events")[0]["event"] == "zipped"


def test_chunked_gzip_without_content_length(client: TestClient, publisher: RecordingPublisher) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "screen", "userId": "u", "name": "Home"}]}))

    def chunks() -> Iterator[bytes]:  # a generator body makes the client use chunked transfer encoding
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    headers = {**basic("wk"), "Content-Encoding": "gzip"}
    assert client.post("/v1/import", content=chunks(), headers=headers).status_code == 200
    assert produced(publisher, "events")[0]["name"] == "Home"


def test_gzip_bomb_is_stopped_at_the_limit(client: TestClient, publisher: RecordingPublisher) -> None:
    bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")  # ~50 KB that inflates to 50 MB
    headers = {**basic("wk"), "Content-Encoding": "gzip"}
    response = client.post("/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert publisher.records == []


@pytest.mark.parametrize(
    ("content", "headers", "status", "code"),
    [
        (b"{not json", {}, 400, "invalid_json"),
        (b"", {}, 400, "invalid_json"),
        (b"[1,2]", {}, 400, "invalid_json"),
        (b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400, "invalid_compression"),
        (b"{}", {"Content-Encoding": "br"}, 415, "unsupported_content_encoding"),
        (b"a=b", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_content_type"),
        (b"{" + b'"x":1,' * 10_000 + b'"y":1}', {}, 413, "request_too_large"),
    ],
)
def test_malformed_requests_are_named(
    client: TestClient, publisher: RecordingPublisher, content: bytes, headers: dict, status: int, code: str
) -> None:
    response = client.post("/v1/track", content=content, headers={**basic("wk"), **headers})
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert response.json()["success"] is False
    assert publisher.records == []


def test_kafka_down_is_503_with_retry_after(client: TestClient, publisher: RecordingPublisher) -> None:
    publisher.down = True
    response = client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=basic("wk"))
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.json()["code"] == "kafka_unavailable"
    assert client.get("/readyz").status_code == 503
    publisher.down = False
    assert client.get("/readyz").status_code == 200


def sign(body: bytes, secret: str = "hook-secret") -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def test_webhook_accepts_signed_events_and_arrays(client: TestClient, publisher: RecordingPublisher) -> None:
    events = [
        {
            "type": "identify",
            "userId": "u",
            "traits": {"plan": "pro"},
            "messageId": "w1",
            "timestamp": "2026-11-23T10:00:00Z",
            "receivedAt": "2026-11-23T10:00:01Z",
        },
        {"type": "track", "userId": "u", "event": "Paid", "messageId": "w2"},
    ]
    body = orjson.dumps(events)
    headers = {"X-API-Key": "hook-key", "X-Signature": sign(body), "Content-Type": "application/json"}
    response = client.post("/v1/webhook", content=body, headers=headers)
    assert response.status_code == 200 and response.json()["accepted"] == 2
    assert [e["messageId"] for e in produced(publisher, "events")] == ["w1", "w2"]
    single = orjson.dumps(events[1])
    headers = {**basic("hook-key"), "X-Signature": sign(single)}
    assert client.post("/v1/webhook", content=single, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({"X-Signature": "0" * 40}, "invalid_signature"),
        ({}, "invalid_signature"),
        ({"X-API-Key": "wrong"}, "unauthorized"),
    ],
)
def test_webhook_refuses_bad_credentials(
    client: TestClient, publisher: RecordingPublisher, headers: dict, code: str
) -> None:
    body = orjson.dumps({"type": "track", "userId": "u", "event": "x"})
    response = client.post("/v1/webhook", content=body, headers={"X-API-Key": "hook-key", **headers})
    assert response.status_code == 401 and response.json()["code"] == code
    assert publisher.records == []


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.post("/v1/track", json={"userId": "u", "event": "x"}, headers=basic("wk"))
    text = client.get("/metrics").text
    assert 'feedhouse_gateway_requests_total{route="/v1/track",status="200"}' in text


def test_analytics_js_settings_point_back_at_the_gateway(client: TestClient) -> None:
    body = client.get("/v1/projects/wk/settings", headers={"Host": "collect.example.com"}).json()
    assert body["integrations"]["Segment.io"] == {
        "apiKey": "wk",
        "apiHost": "collect.example.com/v1",
        "protocol": "http",
    }
    assert client.get("/v1/projects/nope/settings").status_code == 404


def test_cors_lets_browsers_on_other_origins_post(client: TestClient) -> None:
    response = client.post(
        "/v1/t",
        content=orjson.dumps({"anonymousId": "a", "event": "x", "writeKey": "wk"}),
        headers={"Origin": "https://shop.example", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == "*"


def test_oversize_event_in_a_batch_is_kept_as_rejected(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    big = {"type": "track", "userId": "u", "event": "x", "properties": {"blob": "é" * 20_000}}  # 40 KB UTF-8
    small = {"type": "track", "userId": "u", "event": "y"}
    response = client.post("/v1/batch", json={"batch": [big, small]}, headers=basic("wk"))
    assert response.status_code == 200
    assert response.json()["rejected"] == [
        {"index": 0, "code": "event_too_large", "message": response.json()["rejected"][0]["message"]}
    ]
    assert "32768" in response.json()["rejected"][0]["message"]
    assert [e["event"] for e in produced(publisher, "events")] == ["y"]
    [kept] = produced(publisher, "rejected")
    assert orjson.loads(kept["payload"])["properties"]["blob"] == "é" * 20_000


def test_rejections_are_listed_in_the_batch_order(client: TestClient, publisher: RecordingPublisher) -> None:
    """Invalid items are found before oversized ones; the answer still follows the batch."""
    big = {"type": "track", "userId": "u", "event": "x", "properties": {"blob": "é" * 20_000}}
    nameless = {"type": "track", "userId": "u"}
    ok = {"type": "track", "userId": "u", "event": "y"}
    response = client.post("/v1/batch", json={"batch": [big, ok, nameless]}, headers=basic("wk"))
    assert response.status_code == 200
    answered = [(r["index"], r["code"]) for r in response.json()["rejected"]]
    assert answered[0] == (0, "event_too_large") and [index for index, _ in answered] == [0, 2], answered
    assert response.json()["accepted"] == 1
    assert [e["event"] for e in produced(publisher, "events")] == ["y"]
    assert len(produced(publisher, "rejected")) == 2
