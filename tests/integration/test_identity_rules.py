"""Identity rules 1-9 (docs/identity.md), each through the real gateway, broker and identity worker.

The module runs twice: with changelog seals (what the embedded Tansu broker needs) and without
(the Apache Kafka setting), so both paths of the agents are covered.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest

from feedhouse.broker import EmbeddedBroker
from feedhouse.settings import Settings
from feedhouse.streams.overlay import SEAL_KEY
from tests.conftest import FeedhouseProcess, GatewayProcess, make_settings, wait_until
from tests.support.identity_view import IdentityView

pytestmark = pytest.mark.integration


@dataclass
class Stack:
    settings: Settings
    gateway: GatewayProcess
    view: IdentityView

    def send(self, *events: dict) -> None:
        response = httpx.post(
            f"{self.gateway.url}/v1/batch",
            json={"batch": list(events)},
            auth=("dev-write-key", ""),
            timeout=30,
        )
        assert response.status_code == 200 and "rejected" not in response.json(), response.text

    def until(self, condition: object, timeout: float = 30) -> None:
        wait_until(lambda: condition(self.view.refresh()), timeout=timeout)  # type: ignore[operator]


@pytest.fixture(scope="module", params=[True, False], ids=["seals", "no-seals"])
def stack(
    broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("identity")
    current = dataclasses.replace(make_settings(broker, root / "data"), changelog_seals=request.param)
    gateway = GatewayProcess(current, root / "gateway.log")
    worker = FeedhouseProcess("worker", current, root / "worker.log")
    view = IdentityView(current)
    yield Stack(current, gateway, view)
    view.close()
    worker.stop()
    gateway.stop()


def ids(*names: str) -> list[str]:
    """Fresh ids per test: the stack is shared by the whole module."""
    tag = uuid.uuid4().hex[:6]
    return [f"{name}-{tag}" for name in names]


def at(second: int) -> str:
    return f"2026-11-01T10:00:{second:02d}.000Z"


def test_rules_1_2_3_anonymous_history_joins_the_user(stack: Stack) -> None:
    anonymous, user = ids("anon", "user")
    stack.send({"type": "page", "anonymousId": anonymous, "name": "Pricing", "timestamp": at(1)})
    stack.send(
        {
            "type": "identify",
            "anonymousId": anonymous,
            "userId": user,
            "timestamp": at(2),
            "traits": {"email": "ada@example.com"},
        }
    )
    stack.until(lambda view: view.profile(anonymous) == user)
    assert stack.view.profile(user) == user


def test_rule_3_second_user_on_the_same_device_is_a_counted_conflict(stack: Stack) -> None:
    device, first, second = ids("device", "first", "second")
    stack.send({"type": "identify", "anonymousId": device, "userId": first, "timestamp": at(1)})
    stack.send({"type": "identify", "anonymousId": device, "userId": second, "timestamp": at(2)})
    stack.until(lambda view: (view.mapping(device) or {}).get("conflicts") == [second])
    assert stack.view.profile(device) == first
    assert stack.view.profile(second) == second  # two known people are never merged


def test_rule_4_alias_chain_repeat_and_cycle(stack: Stack) -> None:
    a, b, c = ids("A", "B", "C")
    stack.send({"type": "alias", "previousId": a, "userId": b, "timestamp": at(1)})
    stack.send({"type": "alias", "previousId": b, "userId": c, "timestamp": at(2)})
    stack.send({"type": "alias", "previousId": b, "userId": c, "timestamp": at(3)})  # repeated
    stack.send({"type": "alias", "previousId": c, "userId": a, "timestamp": at(4)})  # cycle
    stack.until(lambda view: [view.profile(x) for x in (a, b, c)] == [c, c, c])


def test_rule_4_alias_to_an_unknown_user_creates_the_profile(stack: Stack) -> None:
    old, device, new = ids("old", "device", "new")
    stack.send({"type": "identify", "anonymousId": device, "userId": old, "timestamp": at(1)})
    stack.send({"type": "alias", "previousId": old, "userId": new, "timestamp": at(2)})
    stack.until(lambda view: (view.profile(old), view.profile(device), view.profile(new)) == (new, new, new))


def test_rule_4_interleaved_aliases_and_tracks_across_partitions(stack: Stack) -> None:
    people = [ids("p", "q", "dev") for _ in range(12)]  # keys hash to all 4 partitions
    for second, (previous, user, device) in enumerate(people):
        # Separate requests, keyed by different ids, so they land on different partitions.
        stack.send(
            {
                "type": "track",
                "anonymousId": device,
                "userId": previous,
                "event": "A",
                "timestamp": at(second),
            }
        )
        stack.send({"type": "track", "userId": user, "event": "B", "timestamp": at(second + 1)})
        stack.send({"type": "alias", "previousId": previous, "userId": user, "timestamp": at(second + 2)})
        stack.send(
            {
                "type": "track",
                "anonymousId": device,
                "userId": previous,
                "event": "C",
                "timestamp": at(second + 3),
            }
        )
    stack.until(lambda view: all(view.profile(d) == u and view.profile(p) == u for p, u, d in people))


def test_rule_5_latest_group_call_wins_by_event_time(stack: Stack) -> None:
    user, newer, older = ids("user", "g-new", "g-old")
    stack.send(
        {"type": "group", "userId": user, "groupId": newer, "timestamp": at(20), "traits": {"name": "New Co"}}
    )
    stack.send(
        {"type": "group", "userId": user, "groupId": older, "timestamp": at(10), "traits": {"name": "Old Co"}}
    )
    stack.until(lambda view: view.group(older) is not None)  # the late call was processed...
    state = stack.view.state(user)
    assert state is not None and state["groupId"] == newer  # ...and did not win
    assert orjson.loads(stack.view.group(newer)["traits"]) == {"name": "New Co"}  # type: ignore[index]


def test_rule_6_late_old_identify_does_not_overwrite_traits(stack: Stack) -> None:
    (user,) = ids("user")
    stack.send(
        {"type": "identify", "userId": user, "timestamp": at(30), "traits": {"plan": "pro", "seats": 5}}
    )
    stack.send(
        {"type": "identify", "userId": user, "timestamp": at(10), "traits": {"plan": "free", "city": "Oslo"}}
    )
    stack.until(lambda view: "city" in orjson.loads((view.state(user) or {"traits": "{}"})["traits"]))
    assert orjson.loads(stack.view.state(user)["traits"]) == {"plan": "pro", "seats": 5, "city": "Oslo"}  # type: ignore[index]


def test_rule_7_engage_audience_entered_and_exited(stack: Stack) -> None:
    (user,) = ids("user")
    personas = {
        "personas": {"computation_class": "audience", "computation_key": "order_completed_last_30days"}
    }
    for second, member in ((10, True), (40, False)):
        stack.send(
            {
                "type": "identify",
                "userId": user,
                "timestamp": at(second),
                "context": personas,
                "traits": {"order_completed_last_30days": member},
            }
        )

    def exited(view: IdentityView) -> bool:
        state = view.state(user)
        return (
            state is not None
            and orjson.loads(state["audiences"])["order_completed_last_30days"]["member"] is False
        )

    stack.until(exited)
    audience = orjson.loads(stack.view.state(user)["audiences"])["order_completed_last_30days"]  # type: ignore[index]
    entered_at, exited_at = audience["enteredAt"], audience["exitedAt"]
    assert exited_at - entered_at == 30_000_000  # microseconds between the two calls


def test_rule_8_redelivery_changes_nothing(stack: Stack) -> None:
    user, device = ids("user", "device")
    event = {
        "type": "identify",
        "userId": user,
        "anonymousId": device,
        "messageId": f"dup-{user}",
        "timestamp": at(5),
        "traits": {"plan": "pro"},
    }
    stack.send(event)
    stack.until(lambda view: view.state(user) is not None and view.mapping(device) is not None)
    before = (stack.view.state(user), stack.view.mapping(device))
    stack.send(event)
    (marker,) = ids("marker")  # a later event on the same keys proves the duplicate was processed
    stack.send(
        {"type": "identify", "userId": user, "anonymousId": marker, "timestamp": at(6), "traits": {"x": 1}}
    )
    stack.until(
        lambda view: view.mapping(marker) is not None and "x" in (view.state(user) or {}).get("traits", "")
    )
    after_state = stack.view.state(user)
    assert after_state is not None and before[0] is not None
    assert orjson.loads(after_state["traits"]) == {"plan": "pro", "x": 1}
    assert stack.view.mapping(device) == before[1]  # not even republished


def test_rule_9_placeholders_never_link(stack: Stack) -> None:
    (device,) = ids("device")
    stack.send(
        {
            "type": "identify",
            "userId": "undefined",
            "anonymousId": device,
            "timestamp": at(1),
            "traits": {"seen": True},
        }
    )
    stack.send({"type": "alias", "previousId": device, "userId": "anonymous", "timestamp": at(2)})
    stack.until(lambda view: view.state(device) is not None)  # the anonymous profile got the traits
    assert stack.view.mapping(device) is None and stack.view.profile(device) == device
    assert stack.view.mapping("undefined") is None and stack.view.mapping("anonymous") is None


def changelog_keys(current: Settings, table: str) -> set[bytes]:
    """Every key written to an identity table's changelog so far."""
    from confluent_kafka import Consumer, TopicPartition

    from feedhouse.kafka import consumer_config

    topic = f"{current.topic_prefix}identity-{table}-changelog"
    consumer = Consumer(consumer_config(current, f"test-changelog-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        keys: set[bytes] = set()
        while messages := consumer.consume(1000, 1.0):
            keys |= {message.key() or b"" for message in messages if not message.error()}
        return keys
    finally:
        consumer.close()


def test_changelog_seals_follow_the_setting(stack: Stack) -> None:
    user, anonymous = ids("sealed", "sealed-anon")
    stack.send({"type": "identify", "userId": user, "anonymousId": anonymous, "traits": {"a": 1}})
    stack.until(lambda view: view.profile(anonymous) == user and view.state(user) is not None)
    seal = orjson.dumps(SEAL_KEY)
    for table in ("identity-id-state", "identity-graph-nodes"):
        keys = changelog_keys(stack.settings, table)
        assert orjson.dumps(user) in keys or orjson.dumps(anonymous) in keys, f"{table}: no writes seen"
        assert (seal in keys) is stack.settings.changelog_seals, (
            f"{table}: seal records present={seal in keys}, changelog_seals={stack.settings.changelog_seals}"
        )
