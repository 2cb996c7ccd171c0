"""Regulations end to end, through `feedhouse dev` (real gateway, broker, identity worker, sink,
ClickHouse): each regulation type, and each way a deleted person could come back."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from feedhouse.avro.codec import AvroCodec
from feedhouse.gateway.normalize import normalize
from feedhouse.kafka import producer_config
from tests.conftest import wait_until
from tests.support.dev_stack import DevStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    root = tmp_path_factory.mktemp("privacy")
    running = DevStack(root / "data", root / "dev.log", webhook_api_keys=("hook-key",)).start()
    yield running
    running.stop()


def admin(stack: DevStack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.settings.admin_token}"}


def send(stack: DevStack, *events: dict[str, Any]) -> None:
    response = httpx.post(
        f"{stack.url}/v1/batch",
        json={"batch": list(events)},
        auth=(stack.settings.write_keys[0], ""),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def person(stack: DevStack, tag: str) -> list[str]:
    device, old, user = f"dev-{tag}", f"old-{tag}", f"user-{tag}"
    send(
        stack,
        {
            "type": "page",
            "anonymousId": device,
            "name": "Home",
            "messageId": f"p-{tag}",
            "timestamp": "2026-05-01T10:00:00Z",
        },
        {
            "type": "identify",
            "userId": old,
            "anonymousId": device,
            "traits": {"email": f"{tag}@example.com"},
            "messageId": f"i-{tag}",
            "timestamp": "2026-05-01T10:01:00Z",
        },
        {
            "type": "alias",
            "previousId": old,
            "userId": user,
            "messageId": f"a-{tag}",
            "timestamp": "2026-05-01T10:02:00Z",
        },
        {
            "type": "track",
            "userId": user,
            "event": "Paid",
            "messageId": f"t-{tag}",
            "timestamp": "2026-05-01T10:03:00Z",
        },
    )

    def merged() -> bool:
        response = stack.read(f"/v1/profiles/{device}")
        return (
            response.status_code == 200
            and response.json()["id"] == user
            and response.json()["eventCount"] == 4
        )

    wait_until(merged, timeout=90, interval=0.3, what=f"{tag}'s journey merged")
    return [device, old, user]


def regulate(stack: DevStack, kind: str, ids: list[str], subject: str = "USER_ID") -> dict[str, Any]:
    body = {"regulationType": kind, "subjectType": subject, "subjectIds": ids}
    response = httpx.post(f"{stack.url}/v1/regulations", json=body, headers=admin(stack), timeout=30)
    assert response.status_code == 200, response.text
    regulation_id = response.json()["data"]["regulateId"]
    return finished(stack, regulation_id)


def finished(stack: DevStack, regulation_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = httpx.get(f"{stack.url}/v1/regulations/{regulation_id}", headers=admin(stack), timeout=30)
        if response.status_code != 200:
            return None
        regulation: dict[str, Any] = response.json()["data"]["regulation"]
        assert regulation["overallStatus"] != "FAILED", regulation
        return regulation if regulation["overallStatus"] == "FINISHED" else None

    found = wait_until(done, timeout=60, interval=0.2, what=f"regulation {regulation_id} finished")
    assert isinstance(found, dict)
    return found


def invisible(stack: DevStack, ids: list[str], message_ids: set[str]) -> None:
    for identifier in ids:
        assert stack.read(f"/v1/profiles/{identifier}").status_code == 404, identifier
        assert stack.read(f"/v1/profiles/{identifier}/timeline").status_code == 404, identifier
    feed = {event["messageId"] for event in stack.read("/v1/feed", hidden="true", limit=500).json()["events"]}
    assert not feed & message_ids, f"still in the feed: {feed & message_ids}"


def marker(stack: DevStack) -> None:
    """Send an event for somebody else and wait until it is visible: what was sent before has
    been through the whole pipeline by then (same sink, same batches)."""
    tag = uuid.uuid4().hex[:6]
    send(stack, {"type": "track", "userId": f"marker-{tag}", "event": "Mark", "messageId": f"mark-{tag}"})
    wait_until(
        lambda: stack.read(f"/v1/profiles/marker-{tag}").status_code == 200, timeout=60, what="marker shown"
    )


def replay(stack: DevStack, calls: list[dict[str, Any]]) -> None:
    """Put old events on the events topic again, past the gateway: what a replay of the topic or
    a re-sink would feed the identity router and the sink."""
    current = dataclasses.replace(
        stack.settings, kafka_bootstrap_servers=f"127.0.0.1:{stack.settings.kafka_port}"
    )
    codec = AvroCodec("event")
    producer = Producer(producer_config(current))
    for call in calls:
        # Received long ago, as the original was.
        record = normalize(call, event_type=None, received_at=1_777_000_000_000_000, source_id="replay")
        key = (record["userId"] or record["anonymousId"]).encode()
        producer.produce(current.topic("events"), codec.encode(record), key)
    assert producer.flush(30) == 0


def test_suppress_with_delete_erases_the_person_and_nothing_brings_them_back(stack: DevStack) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = person(stack, tag)
    other = person(stack, f"other-{tag}")
    messages = {f"{kind}-{tag}" for kind in "piat"}

    asked = time.monotonic()
    regulation = regulate(stack, "SUPPRESS_WITH_DELETE", [ids[1]])  # an old, aliased id: the whole person
    invisible(stack, ids, messages)
    seconds = time.monotonic() - asked
    print(f"SUPPRESS_WITH_DELETE invisible after {seconds:.2f} s")
    assert regulation["counts"]["events"] == 4 and regulation["finishedAt"] and regulation["startedAt"]
    assert stack.read(f"/v1/profiles/{other[2]}").json()["eventCount"] == 4, "the other person is untouched"
    assert stack.read("/v1/profiles", **{"trait.email": f"{tag}@example.com"}).json()["total"] == 0

    # Suppressed: new events of any of their ids are answered 200 and dropped.
    send(
        stack,
        {"type": "track", "userId": ids[2], "event": "Again", "messageId": f"again-{tag}"},
        {"type": "page", "anonymousId": ids[0], "name": "Again", "messageId": f"again-page-{tag}"},
    )
    # A replay of the events topic, a duplicate, a late event: the router and the sink drop them.
    replay(
        stack,
        [
            {
                "type": "track",
                "userId": ids[2],
                "event": "Paid",
                "messageId": f"t-{tag}",
                "timestamp": "2026-05-01T10:03:00Z",
            },
            {
                "type": "identify",
                "userId": ids[1],
                "anonymousId": ids[0],
                "traits": {"email": "x@example.com"},
                "messageId": f"i-{tag}",
                "timestamp": "2026-05-01T10:01:00Z",
            },
        ],
    )
    marker(stack)
    invisible(stack, ids, messages | {f"again-{tag}", f"again-page-{tag}"})

    # A restarted identity worker recovers its tables from their changelogs: she is not in them.
    worker = stack.status()["components"]["identity-worker"]["pid"]
    os.kill(worker, signal.SIGKILL)
    wait_until(
        lambda: stack.status()["components"]["identity-worker"]["restarts"] >= 1, timeout=60, what="restart"
    )
    marker(stack)
    invisible(stack, ids, messages)


def test_delete_only_lets_genuinely_new_events_start_a_new_profile(stack: DevStack) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = person(stack, tag)
    regulate(stack, "DELETE_ONLY", [ids[2]])
    invisible(stack, ids, {f"t-{tag}"})
    # A duplicate of an old event (an SDK retrying) and a late one: not back.
    send(
        stack,
        {
            "type": "track",
            "userId": ids[2],
            "event": "Paid",
            "messageId": f"t-{tag}",
            "timestamp": "2026-05-01T10:03:00Z",
        },
        {
            "type": "track",
            "userId": ids[2],
            "event": "Late",
            "messageId": f"late-{tag}",
            "timestamp": "2026-05-02T10:00:00Z",
        },
    )
    marker(stack)
    assert stack.read(f"/v1/profiles/{ids[2]}").status_code == 404
    # Genuinely new: now, after the deletion.
    send(stack, {"type": "track", "userId": ids[2], "event": "Back", "messageId": f"back-{tag}"})
    wait_until(
        lambda: stack.read(f"/v1/profiles/{ids[2]}").status_code == 200, timeout=60, what="new profile"
    )
    profile = stack.read(f"/v1/profiles/{ids[2]}").json()
    assert profile["eventCount"] == 1 and profile["traits"] == {} and profile["ids"] == [ids[2]], profile


def test_suppress_only_keeps_the_data_and_unsuppress_lifts_it(stack: DevStack) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = person(stack, tag)
    regulation = regulate(stack, "SUPPRESS_ONLY", [ids[2]])
    assert regulation["counts"]["suppressed_ids"] >= 3
    assert stack.read(f"/v1/profiles/{ids[2]}").json()["eventCount"] == 4, "suppression deletes nothing"
    send(stack, {"type": "track", "userId": ids[2], "event": "Quiet", "messageId": f"quiet-{tag}"})
    marker(stack)
    assert stack.read(f"/v1/profiles/{ids[2]}").json()["eventCount"] == 4
    regulate(stack, "UNSUPPRESS", [ids[2]])
    send(stack, {"type": "track", "userId": ids[2], "event": "Loud", "messageId": f"loud-{tag}"})
    wait_until(
        lambda: stack.read(f"/v1/profiles/{ids[2]}").json()["eventCount"] == 5, timeout=60, what="lifted"
    )


def test_the_api_names_what_is_wrong_and_needs_the_admin_token(stack: DevStack) -> None:
    url = f"{stack.url}/v1/regulations"
    body = {"regulationType": "DELETE_ONLY", "subjectIds": ["x"]}
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    read = {"Authorization": f"Bearer {stack.settings.read_token}"}
    assert httpx.post(url, json=body, headers=read, timeout=10).status_code == 401, (
        "the read token does not administer"
    )
    bad = httpx.post(
        url, json={"regulationType": "DELETE", "subjectIds": ["x"]}, headers=admin(stack), timeout=10
    )
    assert bad.status_code == 400 and bad.json()["message"].startswith("regulationType:"), bad.text
    too_many = {"regulationType": "DELETE_ONLY", "subjectIds": [f"i{n}" for n in range(5001)]}
    assert (
        httpx.post(url, json=too_many, headers=admin(stack), timeout=10)
        .json()["message"]
        .startswith("subjectIds:")
    )
    listing = httpx.get(url, headers=admin(stack), timeout=10).json()["data"]["regulations"]
    assert all({"id", "regulationType", "overallStatus", "createdAt"} <= set(r) for r in listing)
    assert httpx.get(f"{url}/nope", headers=admin(stack), timeout=10).status_code == 404


def test_a_deletion_forwarded_by_segment_to_the_webhook_is_honoured(stack: DevStack) -> None:
    tag = uuid.uuid4().hex[:6]
    ids = person(stack, tag)
    response = httpx.post(
        f"{stack.url}/v1/webhook",
        json=[{"type": "delete", "userId": ids[2], "messageId": f"del-{tag}"}],
        headers={"X-API-Key": "hook-key"},
        timeout=30,
    )
    assert response.status_code == 200, response.text

    def forwarded() -> dict[str, Any] | None:
        listing = httpx.get(f"{stack.url}/v1/regulations", headers=admin(stack), timeout=10).json()["data"]
        found = [r for r in listing["regulations"] if ids[2] in r["subjectIds"] and r["source"] == "webhook"]
        return found[0] if found else None

    regulation = wait_until(forwarded, timeout=30, what="the forwarded deletion became a regulation")
    assert isinstance(regulation, dict) and regulation["regulationType"] == "DELETE_ONLY"
    finished(stack, regulation["id"])
    invisible(stack, ids, {f"t-{tag}"})
