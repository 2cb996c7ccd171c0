"""The identity worker under failure and scale-out: same input, same final state.

A reference run (one worker, undisturbed) processes a generated stream; then the same stream
is processed with a worker SIGKILLed mid-stream and restarted, and with two workers sharing
the partitions. Both must converge to exactly the reference state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from feedhouse.broker import EmbeddedBroker
from feedhouse.gateway.normalize import normalize
from feedhouse.ids import DEFAULT_PLACEHOLDER_IDS
from feedhouse.kafka import consumer_config
from feedhouse.settings import Settings
from feedhouse.streams.graph import ALIAS, CLAIM, Edge, Resolution, resolve
from feedhouse.streams.router import commands_for
from tests.conftest import FeedhouseProcess, GatewayProcess, make_settings, wait_until
from tests.support.datagen import generate
from tests.support.identity_view import IdentityView
from tests.support.kafka_reader import header_dict

pytestmark = pytest.mark.integration
EVENTS = generate(3000, seed=11, profiles=300)


def send(gateway: GatewayProcess, events: list[dict[str, Any]]) -> None:
    for start in range(0, len(events), 250):
        response = httpx.post(
            f"{gateway.url}/v1/batch",
            json={"batch": events[start : start + 250]},
            auth=("dev-write-key", ""),
            timeout=30,
        )
        assert response.status_code == 200, response.text


def converge(view: IdentityView, expected: dict[str, Any], timeout: float = 120) -> None:
    def same() -> bool:
        return view.refresh().snapshot() == expected

    try:
        wait_until(same, timeout=timeout, interval=0.5)
    except BaseException:
        actual = view.snapshot()
        for table, rows in expected.items():
            differing = {
                key for key in rows.keys() | actual[table].keys() if rows.get(key) != actual[table].get(key)
            }
            for key in sorted(differing)[:5]:
                print(table, key, "expected", rows.get(key), "actual", actual[table].get(key))
        raise


@pytest.fixture(scope="module")
def reference(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The state one undisturbed worker reaches on the stream (waits until it stops changing)."""
    root = tmp_path_factory.mktemp("reference")
    current = make_settings(broker, root / "data")
    gateway = GatewayProcess(current, root / "gateway.log")
    worker = FeedhouseProcess("worker", current, root / "worker.log")
    view = IdentityView(current)
    try:
        send(gateway, EVENTS)
        previous: list[Any] = [None]

        def settled() -> bool:
            snapshot = view.refresh().snapshot()
            done = snapshot == previous[0] and len(snapshot["identity-mapping"]) > 100
            previous[0] = snapshot
            return done

        wait_until(settled, timeout=120, interval=3.0)
        return previous[0]
    finally:
        view.close()
        worker.stop()
        gateway.stop()


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, GatewayProcess, IdentityView]]:
    gateway = GatewayProcess(settings, tmp_path / "gateway.log")
    view = IdentityView(settings)
    yield settings, gateway, view
    view.close()
    gateway.stop()


def model_resolution(events: list[dict[str, Any]]) -> Resolution:
    """What the pure identity rules say about the stream, computed without Kafka or Faust."""
    edges: list[Edge] = []
    for event in events:
        record = normalize(event, event_type=None, received_at=0, source_id="s")
        for command in commands_for(record, frozenset(DEFAULT_PLACEHOLDER_IDS)):
            c = command.record
            if c["kind"] in (CLAIM, ALIAS):
                edges.append((c["timestamp"], c["messageId"], c["kind"], c["id"], c["target"]))
    return resolve(edges)


def test_reference_run_matches_the_rules(reference: dict[str, Any]) -> None:
    mapping = reference["identity-mapping"]
    model = model_resolution(EVENTS)
    assert {key: record["profileId"] for key, record in mapping.items()} == model.profiles
    assert {
        key: tuple(record["conflicts"]) for key, record in mapping.items() if record["conflicts"]
    } == model.conflicts
    assert len(model.conflicts) >= 1  # the stream has shared devices
    assert sum(1 for key, record in mapping.items() if record["profileId"] != key) > 100  # links + aliases
    assert len(reference["identity-groups"]) >= 3 and len(reference["identity-state"]) > 100


def test_sigkill_mid_stream_then_restart_converges(
    reference: dict[str, Any], stack: tuple[Settings, GatewayProcess, IdentityView], tmp_path: Path
) -> None:
    settings, gateway, view = stack
    worker = FeedhouseProcess("worker", settings, tmp_path / "worker.log")
    send(gateway, EVENTS[:1500])
    wait_until(lambda: len(view.refresh().latest[settings.topic("identity-mapping")]) > 20, timeout=60)
    worker.kill()
    send(gateway, EVENTS[1500:])
    restarted = FeedhouseProcess("worker", settings, tmp_path / "worker.log")
    try:
        converge(view, reference)
    finally:
        restarted.stop()


def test_two_workers_reach_the_same_state_as_one(
    reference: dict[str, Any], stack: tuple[Settings, GatewayProcess, IdentityView], tmp_path: Path
) -> None:
    settings, gateway, view = stack
    workers = [FeedhouseProcess("worker", settings, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        send(gateway, EVENTS)
        converge(view, reference)
        # Both workers did identity work: each owns some partitions of the events topic.
        committed = router_commits(settings)
        assert len(committed) == settings.events_partitions
    finally:
        for worker in workers:
            worker.stop()
    log_lines = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all("Setting newly assigned partitions" in text for text in log_lines)


def router_commits(settings: Settings) -> list[TopicPartition]:
    consumer = Consumer(consumer_config(settings, f"{settings.topic_prefix}identity-router"))
    topic = settings.topic("events")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
    consumer.close()
    return [tp for tp in committed if tp.offset >= 0]


def test_undecodable_records_go_to_the_dead_letter_topic(
    stack: tuple[Settings, GatewayProcess, IdentityView], tmp_path: Path
) -> None:
    settings, gateway, view = stack
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.topic("events"), b"definitely not avro", b"k1", partition=0)
    producer.produce(settings.topic("identity-graph"), b"\xc3\x01garbage", b"k2", partition=0)
    producer.flush(10)
    worker = FeedhouseProcess("worker", settings, tmp_path / "worker.log")
    try:
        send(
            gateway,
            [{"type": "identify", "userId": "after-u", "anonymousId": "after-a", "messageId": "after"}],
        )
        wait_until(
            lambda: view.refresh().profile("after-a") == "after-u", timeout=60
        )  # the worker kept going
        letters = read_dead_letters(settings, 2)
    finally:
        worker.stop()
    by_source = {headers["feedhouse.source.topic"]: (value, headers) for value, headers in letters}
    value, headers = by_source[settings.topic("events")]
    assert value == b"definitely not avro"
    assert headers["feedhouse.source.partition"] == "0" and headers["feedhouse.source.offset"].isdigit()
    assert "single-object" in headers["feedhouse.error"] or "marker" in headers["feedhouse.error"]
    assert by_source[settings.topic("identity-graph")][1]["feedhouse.component"] == "identity-graph"


def read_dead_letters(settings: Settings, count: int) -> list[tuple[bytes, dict[str, str]]]:
    consumer = Consumer(consumer_config(settings, "test-dlq-reader"))
    topic = settings.topic("dead-letter")
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[tuple[bytes, dict[str, str]]] = []

    def enough() -> bool:
        for message in consumer.consume(100, 0.2):
            if message.error() is None:
                headers = header_dict(message)
                found.append((message.value() or b"", headers))
        return len(found) >= count

    try:
        wait_until(enough, timeout=30)
    finally:
        consumer.close()
    return found
