"""The official Python SDK, pointed at a real gateway process, delivers every call into Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from feedhouse.settings import Settings
from tests.conftest import GatewayProcess
from tests.support.kafka_reader import KafkaReader

pytestmark = pytest.mark.integration

WHEN = datetime(2026, 11, 20, 9, 30, 15, 123000, tzinfo=UTC)


def send_every_call(client: Client, tag: str) -> dict[str, dict]:
    """One call of each type with distinctive values; returns what was sent, by messageId."""
    sent: dict[str, dict] = {}

    def remember(message_id: str, **fields: object) -> str:
        sent[message_id] = fields
        return message_id

    context = {"ip": "203.0.113.9", "locale": "fr-FR", "campaign": {"name": "winter"}}
    integrations = {"All": True, "Mixpanel": False}
    client.identify(
        f"user-{tag}",
        {"email": f"{tag}@example.com", "plan": "pro", "age": 41},
        context,
        WHEN,
        f"anon-{tag}",
        integrations,
        remember(f"{tag}-identify", type="identify", traits=True),
    )
    client.track(
        f"user-{tag}",
        "Order Completed",
        {"revenue": 99.5, "items": [{"sku": "A-1", "qty": 2}], "coupon": None},
        context,
        WHEN + timedelta(seconds=1),
        None,
        integrations,
        remember(f"{tag}-track", type="track"),
    )
    client.page(
        f"user-{tag}",
        "Docs",
        "Getting Started",
        {"url": "https://example.com/docs", "title": "Start"},
        context,
        WHEN + timedelta(seconds=2),
        None,
        integrations,
        remember(f"{tag}-page", type="page"),
    )
    client.screen(
        f"user-{tag}",
        "Onboarding",
        "Welcome",
        {"step": 1},
        context,
        WHEN + timedelta(seconds=3),
        None,
        integrations,
        remember(f"{tag}-screen", type="screen"),
    )
    client.group(
        f"user-{tag}",
        f"group-{tag}",
        {"name": "Initech", "employees": 250},
        context,
        WHEN + timedelta(seconds=4),
        None,
        integrations,
        remember(f"{tag}-group", type="group"),
    )
    client.alias(
        f"anon-{tag}",
        f"user-{tag}",
        context,
        WHEN + timedelta(seconds=5),
        integrations,
        remember(f"{tag}-alias", type="alias"),
    )
    return sent


@pytest.mark.parametrize(("sync_mode", "gzip"), [(True, False), (True, True), (False, False), (False, True)])
def test_sdk_calls_arrive_in_kafka_as_sent(
    gateway: GatewayProcess, reader: KafkaReader, settings: Settings, sync_mode: bool, gzip: bool
) -> None:
    errors: list[Exception] = []
    client = Client(
        "dev-write-key",
        host=gateway.url,
        gzip=gzip,
        sync_mode=sync_mode,
        max_retries=0,
        on_error=lambda error, _batch: errors.append(error),
    )
    tag = f"{int(sync_mode)}{int(gzip)}"
    sent = send_every_call(client, tag)
    client.flush()
    if not sync_mode:
        client.shutdown()  # stops the SDK's consumer thread (sync mode has none)
    assert errors == []

    events = {event["messageId"]: event for event in reader.read("events", len(sent))}
    assert set(events) == set(sent)

    identify = events[f"{tag}-identify"]
    assert (identify["type"], identify["userId"], identify["anonymousId"]) == (
        "identify",
        f"user-{tag}",
        f"anon-{tag}",
    )
    assert orjson.loads(identify["traits"]) == {"email": f"{tag}@example.com", "plan": "pro", "age": 41}
    track = events[f"{tag}-track"]
    assert track["event"] == "Order Completed"
    assert orjson.loads(track["properties"]) == {
        "revenue": 99.5,
        "items": [{"sku": "A-1", "qty": 2}],
        "coupon": None,
    }
    page = events[f"{tag}-page"]
    assert (page["category"], page["name"]) == ("Docs", "Getting Started")
    assert orjson.loads(page["properties"])["url"] == "https://example.com/docs"
    screen = events[f"{tag}-screen"]
    assert (screen["name"], orjson.loads(screen["properties"])) == ("Welcome", {"step": 1})
    group = events[f"{tag}-group"]
    assert group["groupId"] == f"group-{tag}"
    assert orjson.loads(group["traits"]) == {"name": "Initech", "employees": 250}
    alias = events[f"{tag}-alias"]
    assert (alias["previousId"], alias["userId"]) == (f"anon-{tag}", f"user-{tag}")

    for offset, message_id in enumerate(sent):
        event = events[message_id]
        context = orjson.loads(event["context"])
        assert context["ip"] == "203.0.113.9" and context["campaign"] == {"name": "winter"}
        assert context["library"]["name"] == "analytics-python"
        assert orjson.loads(event["integrations"]) == {"All": True, "Mixpanel": False}
        # The client's timestamp is kept verbatim; the corrected one is within the skew window.
        expected = (WHEN + timedelta(seconds=offset)).isoformat(timespec="milliseconds")
        assert event["originalTimestamp"] == expected
        assert event["sentAt"] is not None
        assert event["receivedAt"] >= event["timestamp"]  # the SDK clock is correct, WHEN is past
        assert event["sourceId"] == settings.source_id("dev-write-key")


def test_sdk_sees_api_errors_by_code(gateway: GatewayProcess) -> None:
    client = Client("not-a-key", host=gateway.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as info:
        client.track("u", "x")
    assert (info.value.status, info.value.code) == (401, "unauthorized")
