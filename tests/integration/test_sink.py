"""The sink on real parts: Avro records on a Tansu broker -> Sink thread -> chDB, queried back."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client import REGISTRY

from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse.client import database_for
from feedhouse.clickhouse.tables import MAX_MICROS, MIN_MICROS
from feedhouse.kafka import consumer_config, producer_config
from feedhouse.settings import Settings
from feedhouse.sink.consumer import Sink
from feedhouse.sink.embedded import start_embedded
from feedhouse.sink.writer import Backoff
from tests.conftest import wait_until
from tests.support.kafka_reader import header_dict

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z in microseconds


def fast(settings: Settings, **overrides: Any) -> Settings:
    """Test settings: Tansu joins a group after session_timeout / 2, so keep it short."""
    values: dict[str, Any] = {
        "kafka_session_timeout_ms": 2000,
        "kafka_heartbeat_interval_ms": 500,
        "sink_batch_seconds": 0.2,
    }
    values.update(overrides)
    return dataclasses.replace(settings, **values)


def event(i: int, **fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "track",
        "messageId": f"m-{i}",
        "userId": f"u-{i % 50}",
        "anonymousId": f"a-{i % 70}",
        "groupId": None,
        "previousId": None,
        "event": "Order Completed",
        "name": None,
        "category": None,
        "timestamp": T0 + i,
        "receivedAt": T0 + i + 1000,
        "originalTimestamp": None,
        "sentAt": None,
        "properties": orjson.dumps({"revenue": i / 2, "currency": "EUR"}).decode(),
        "traits": None,
        "context": orjson.dumps({"ip": "10.0.0.1", "library": {"name": "test"}}).decode(),
        "integrations": None,
        "extra": None,
        "sourceId": "src-1",
    }
    record.update(fields)
    return record


class Topics:
    """Produces Avro records (the real codec) to this test's topics, acknowledged by the broker."""

    CODECS = {
        "events": "event",
        "rejected": "rejected",
        "identity-mapping": "id_mapping",
        "identity-profiles": "profile_members",
        "identity-state": "id_state",
        "identity-groups": "group_state",
    }

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = Producer(producer_config(settings))
        self.codecs = {name: AvroCodec(schema) for name, schema in self.CODECS.items()}

    def send(self, name: str, records: list[dict[str, Any]], key_field: str | None = None) -> None:
        codec = self.codecs[name]
        for record in records:
            key = str(record[key_field]).encode() if key_field else None
            self.producer.produce(self.settings.topic(name), codec.encode(record), key)
            self.producer.poll(0)
        assert self.producer.flush(10) == 0

    def send_raw(self, name: str, value: bytes, partition: int = 0) -> None:
        self.producer.produce(self.settings.topic(name), value, b"raw", partition=partition)
        assert self.producer.flush(10) == 0


def committed(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """partition -> committed offset of ``group`` (absent when nothing was committed)."""
    consumer = Consumer(consumer_config(settings, group))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in offsets if tp.offset >= 0}
    finally:
        consumer.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = Consumer(consumer_config(settings, f"probe-{uuid.uuid4().hex[:8]}"))
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
    finally:
        consumer.close()


def all_committed(settings: Settings, group: str, topic: str) -> bool:
    ends = {p: end for p, end in end_offsets(settings, topic).items() if end > 0}
    done = committed(settings, group, topic)
    return all(done.get(p, 0) >= end for p, end in ends.items())


def drained(settings: Settings, group: str, names: tuple[str, ...]) -> bool:
    """Every record of these topics is committed by ``group``: written, since the sink commits after."""
    return all(all_committed(settings, group, settings.topic(name)) for name in names)


def scalar(client: Client, sql: str, **parameters: Any) -> Any:
    return client.query(sql, parameters=parameters).result_rows[0][0]


@contextmanager
def running_sink(settings: Settings, **kwargs: Any) -> Iterator[Sink]:
    """A Sink on a thread of this process, stopped (and checked for errors) on exit."""
    sink = Sink(settings, backoff=Backoff(initial=0.05, maximum=0.5), **kwargs)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            errors.append(exc)
            raise

    thread = threading.Thread(target=run, name="sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "sink did not stop"
        assert not errors, errors


def test_every_topic_lands_in_its_table(settings: Settings, clickhouse: Client) -> None:
    current = fast(settings)
    topics = Topics(current)
    topics.send("events", [event(i) for i in range(300)], key_field="userId")
    topics.send(
        "events",
        [event(300, userId="undefined", anonymousId="device-9", type="page", name="Home", event=None)],
    )
    topics.send(
        "rejected",
        [
            {
                "code": "missing_event",
                "message": "track requires event",
                "receivedAt": T0,
                "path": "/v1/batch",
                "index": 2,
                "sourceId": "src-1",
                "payload": '{"type":"track"}',
            }
        ],
    )
    topics.send(
        "identity-mapping",
        [{"id": "a-1", "profileId": "u-1", "version": 1, "conflicts": ["u-9"], "updatedAt": T0}],
        key_field="id",
    )
    topics.send(
        "identity-profiles",
        [{"profileId": "u-1", "ids": ["a-1", "u-1"], "overflow": False, "version": 1, "updatedAt": T0}],
        key_field="profileId",
    )
    topics.send(
        "identity-state",
        [
            {
                "id": "u-1",
                "traits": '{"email":"ada@example.com","plan":"pro"}',
                "traitTimes": f'{{"email":{T0},"plan":{T0}}}',
                "groupId": "g-1",
                "groupTime": T0,
                "audiences": f'{{"vip":{{"member":true,"time":{T0},"enteredAt":{T0},"exitedAt":null}}}}',
                "version": 1,
                "updatedAt": T0,
            }
        ],
        key_field="id",
    )
    topics.send(
        "identity-groups",
        [
            {
                "groupId": "g-1",
                "traits": '{"name":"Acme"}',
                "traitTimes": f'{{"name":{T0}}}',
                "version": 1,
                "updatedAt": T0,
            }
        ],
        key_field="groupId",
    )
    with running_sink(current):
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM events") == 301)
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM group_state") == 1)
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM rejected_events") == 1)
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM id_mapping") == 1)
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM id_state") == 1)
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM profile_members") == 1)

    row = clickhouse.query(
        "SELECT user_id, anonymous_id, person_key, event, toUnixTimestamp64Micro(timestamp),"
        " properties_json.revenue::Float64, context_json.library.name::String, source_id"
        " FROM events FINAL WHERE message_id = 'm-7'"
    ).result_rows
    assert row == [("u-7", "a-7", "u-7", "Order Completed", T0 + 7, 3.5, "test", "src-1")]
    page = clickhouse.query(
        "SELECT person_key, type, name, event FROM events FINAL WHERE message_id = 'm-300'"
    )
    assert page.result_rows == [("device-9", "page", "Home", "")]
    # Resolution at query time: a-1's events belong to u-1's profile.
    assert scalar(clickhouse, "SELECT profile_id FROM events_resolved WHERE message_id = 'm-1'") == "u-1"
    profile = clickhouse.query(
        "SELECT traits, group_id, audiences FROM profiles WHERE profile_id = 'u-1'"
    ).result_rows
    assert profile == [('{"email":"ada@example.com","plan":"pro"}', "g-1", ["vip"])]
    # The graph's record of u-1's ids, and its key-value mirror.
    mirrored = clickhouse.query("SELECT ids, version FROM profile_members_kv WHERE profile_id = 'u-1'")
    assert mirrored.result_rows == [(["a-1", "u-1"], 1)], mirrored.result_rows
    assert scalar(clickhouse, "SELECT code FROM rejected_events") == "missing_event"
    assert (
        scalar(
            clickhouse, "SELECT id FROM id_state_by_trait WHERE key = 'email' AND value = 'ada@example.com'"
        )
        == "u-1"
    )
    assert REGISTRY.get_sample_value("feedhouse_sink_rows_inserted_total", {"table": "events"})


def test_duplicates_never_show_twice(settings: Settings, clickhouse: Client) -> None:
    current = fast(settings)
    topics = Topics(current)
    # Same messageId twice in one batch, and again later in another batch with a newer receivedAt.
    topics.send("events", [event(1), event(1), event(2)], key_field="userId")
    with running_sink(current):
        # Within one insert, ReplacingMergeTree already collapses them (optimize_on_insert).
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM events") == 2)
        topics.send(
            "events", [event(1, receivedAt=T0 + 10**9, properties='{"revenue":99}')], key_field="userId"
        )
        # Physically three rows (no merge has run), logically two events, right after the insert.
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM events") == 3)
        assert scalar(clickhouse, "SELECT count() FROM events FINAL") == 2
        assert scalar(clickhouse, "SELECT count() FROM events_resolved") == 2
        newest = clickhouse.query(
            "SELECT toUnixTimestamp64Micro(received_at), properties_json.revenue::Int64"
            " FROM events_resolved WHERE message_id = 'm-1'"
        ).result_rows
        assert newest == [(T0 + 10**9, 99)]
        assert scalar(clickhouse, "SELECT event_count FROM profiles WHERE profile_id = 'u-1'") == 1


def test_newest_version_wins(settings: Settings, clickhouse: Client) -> None:
    current = fast(settings)
    topics = Topics(current)

    def mapping(profile: str, version: int) -> dict[str, Any]:
        return {"id": "anon-1", "profileId": profile, "version": version, "conflicts": [], "updatedAt": T0}

    def state(email: str, version: int) -> dict[str, Any]:
        return {
            "id": "user-1",
            "traits": orjson.dumps({"email": email}).decode(),
            "traitTimes": orjson.dumps({"email": T0 + version}).decode(),
            "groupId": f"g-{version}",
            "groupTime": T0 + version,
            "audiences": "{}",
            "version": version,
            "updatedAt": T0,
        }

    def group(name: str, version: int) -> dict[str, Any]:
        return {
            "groupId": "g-1",
            "traits": orjson.dumps({"name": name}).decode(),
            "traitTimes": "{}",
            "version": version,
            "updatedAt": T0,
        }

    # Out of order, in one batch: version 3 arrives before version 2.
    topics.send("identity-mapping", [mapping("anon-1", 1), mapping("user-3", 3), mapping("user-2", 2)], "id")
    topics.send("identity-state", [state("v1@x", 1), state("v3@x", 3), state("v2@x", 2)], "id")
    topics.send("identity-groups", [group("One", 1), group("Three", 3), group("Two", 2)], "groupId")
    topics.send("events", [event(5, userId=None, anonymousId="anon-1")], key_field="anonymousId")
    names = ("identity-mapping", "identity-state", "identity-groups", "events")
    with running_sink(current) as sink:
        wait_until(lambda: drained(current, sink.group_id, names))
        # And a late, older version after the newest: still ignored.
        topics.send("identity-mapping", [mapping("user-1", 1)], "id")
        wait_until(lambda: drained(current, sink.group_id, names))

    assert scalar(clickhouse, "SELECT profile_id FROM id_mapping_current WHERE id = 'anon-1'") == "user-3"
    assert (
        scalar(clickhouse, "SELECT argMax(profile_id, version) FROM id_mapping WHERE id = 'anon-1'")
        == "user-3"
    )
    assert scalar(clickhouse, "SELECT traits FROM id_state_current WHERE id = 'user-1'") == '{"email":"v3@x"}'
    assert scalar(clickhouse, "SELECT traits FROM groups WHERE group_id = 'g-1'") == '{"name":"Three"}'
    assert scalar(clickhouse, "SELECT profile_id FROM events_resolved WHERE message_id = 'm-5'") == "user-3"
    # The lookup tables hold stale candidates; verified against the current row, one remains.
    verified = clickhouse.query(
        "SELECT t.id FROM id_state_by_trait AS t FINAL"
        " INNER JOIN id_state_current AS s ON s.id = t.id"
        " WHERE t.key = 'email' AND JSONExtractString(s.traits, 'email') = t.value AND t.value LIKE 'v%'"
    ).result_rows
    assert verified == [("user-1",)] and scalar(clickhouse, "SELECT count() FROM id_state_by_trait") == 3


def test_garbage_goes_to_the_dead_letter_topic_and_the_sink_keeps_going(
    settings: Settings, clickhouse: Client
) -> None:
    current = fast(settings)
    topics = Topics(current)
    topics.send_raw("events", b"\xc3\x01garbage, not avro", partition=0)
    topics.send_raw("identity-state", b"", partition=1)
    for i in range(3):
        topics.producer.produce(
            current.topic("events"), topics.codecs["events"].encode(event(i)), partition=0
        )
    topics.producer.flush(10)
    with running_sink(current):
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM events") == 3)
        letters = read_dead_letters(current, 2)
        topics.send("events", [event(i) for i in range(3, 10)], key_field="userId")
        wait_until(lambda: scalar(clickhouse, "SELECT count() FROM events") == 10)
        wait_until(lambda: all_committed(current, f"{current.topic_prefix}sink", current.topic("events")))

    by_topic = {headers["feedhouse.source.topic"]: (value, headers) for value, headers in letters}
    value, headers = by_topic[current.topic("events")]
    assert value == b"\xc3\x01garbage, not avro"
    assert headers["feedhouse.source.partition"] == "0" and headers["feedhouse.source.offset"] == "0"
    assert headers["feedhouse.component"] == "sink" and headers["feedhouse.error"].startswith("decode:")
    _, headers = by_topic[current.topic("identity-state")]
    assert (headers["feedhouse.source.partition"], headers["feedhouse.source.offset"]) == ("1", "0")
    assert REGISTRY.get_sample_value("feedhouse_dead_letters_total", {"component": "sink"})


def read_dead_letters(settings: Settings, count: int) -> list[tuple[bytes, dict[str, str]]]:
    topic = settings.topic("dead-letter")
    consumer = Consumer(consumer_config(settings, f"dlq-reader-{uuid.uuid4().hex[:8]}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[tuple[bytes, dict[str, str]]] = []
    try:

        def more() -> bool:
            for message in consumer.consume(10, 0.2):
                if message.error() is None:
                    headers = header_dict(message)
                    found.append((message.value() or b"", headers))
            return len(found) >= count

        wait_until(more)
        return found
    finally:
        consumer.close()


def test_offsets_are_committed_only_after_the_insert(settings: Settings, clickhouse: Client) -> None:
    current = fast(settings)
    group = f"{current.topic_prefix}sink"
    topics = Topics(current)
    database = database_for(current)
    topics.send("events", [event(i) for i in range(50)], key_field="userId")
    with running_sink(current):
        wait_until(lambda: all_committed(current, group, current.topic("events")))
        before = committed(current, group, current.topic("events"))
        assert scalar(clickhouse, "SELECT count() FROM events") == 50

        # ClickHouse now refuses inserts into events: the table is gone (as during a bad deploy).
        clickhouse.command(f"RENAME TABLE `{database}`.events TO `{database}`.events_away")
        failures = (
            REGISTRY.get_sample_value(
                "feedhouse_sink_insert_failures_total", {"table": "events", "kind": "retry"}
            )
            or 0.0
        )
        topics.send("events", [event(i) for i in range(50, 120)], key_field="userId")

        def retried() -> bool:
            now = REGISTRY.get_sample_value(
                "feedhouse_sink_insert_failures_total", {"table": "events", "kind": "retry"}
            )
            return (now or 0.0) >= failures + 3

        wait_until(retried)
        assert committed(current, group, current.topic("events")) == before  # nothing committed
        assert not all_committed(current, group, current.topic("events"))

        clickhouse.command(f"RENAME TABLE `{database}`.events_away TO `{database}`.events")
        wait_until(lambda: all_committed(current, group, current.topic("events")))
        assert scalar(clickhouse, "SELECT count() FROM events FINAL") == 120
        assert scalar(clickhouse, "SELECT uniqExact(message_id) FROM events") == 120


def test_a_row_clickhouse_refuses_is_isolated_and_dead_lettered(
    settings: Settings, clickhouse: Client
) -> None:
    current = fast(settings)
    topics = Topics(current)
    # Make ClickHouse itself refuse one row (code 469, VIOLATED_CONSTRAINT) among many.
    clickhouse.command("ALTER TABLE events ADD CONSTRAINT no_poison CHECK message_id != 'poison'")
    records = [event(i) for i in range(40)]
    records.insert(17, event(999, messageId="poison"))
    topics.send("events", records, key_field="userId")
    with running_sink(current) as sink:
        wait_until(lambda: drained(current, sink.group_id, ("events",)))
        [(value, headers)] = read_dead_letters(current, 1)
    assert scalar(clickhouse, "SELECT count() FROM events FINAL") == 40
    assert scalar(clickhouse, "SELECT countIf(message_id = 'poison') FROM events") == 0
    assert topics.codecs["events"].decode(value)["messageId"] == "poison"
    assert (
        headers["feedhouse.error"].startswith("insert:")
        and "VIOLATED_CONSTRAINT" in headers["feedhouse.error"]
    )
    assert headers["feedhouse.source.topic"] == current.topic("events")


def test_readers_share_the_client_while_the_sink_inserts(settings: Settings, clickhouse: Client) -> None:
    # The read API's request threads use the process's shared client while the sink thread
    # inserts through its own: no errors, and every reader sees counts only grow.
    current = fast(settings, sink_batch_rows=500)
    topics = Topics(current)
    stop = threading.Event()
    problems: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(4)]

    def read(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                mine.append(scalar(clickhouse, "SELECT count() FROM events_resolved WHERE profile_id != ''"))
            except BaseException as exc:
                problems.append(exc)
                return

    readers = [threading.Thread(target=read, args=(mine,), daemon=True) for mine in seen]
    with running_sink(current) as sink:
        for reader in readers:
            reader.start()
        for start in range(0, 5000, 1000):
            topics.send("events", [event(i) for i in range(start, start + 1000)], key_field="userId")
        wait_until(lambda: drained(current, sink.group_id, ("events",)))
        wait_until(lambda: all(mine and mine[-1] == 5000 for mine in seen))
        stop.set()
        for reader in readers:
            reader.join(timeout=10)
    assert not problems, problems[:3]
    assert all(mine == sorted(mine) for mine in seen)
    assert sink.client is not clickhouse  # the sink inserts through a handle of its own


def test_embedded_sink_migrates_and_runs_on_a_thread(settings: Settings, ch_client: Client) -> None:
    current = fast(settings)
    Topics(current).send("events", [event(i) for i in range(20)], key_field="userId")
    stop = threading.Event()
    thread = start_embedded(current, stop)
    wait_until(lambda: scalar(ch_client, "SELECT count() FROM events_resolved") == 20)
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert all_committed(current, f"{current.topic_prefix}sink", current.topic("events"))


def test_an_event_whose_tail_clickhouse_cannot_read_is_isolated_and_dead_lettered(
    settings: Settings, clickhouse: Client
) -> None:
    # Python reads only an event's ids and times; ClickHouse decodes the rest. A record whose
    # later fields are broken passes the first and is refused by the second: it alone goes to
    # the dead-letter topic, the rows around it are stored.
    current = fast(settings)
    topics = Topics(current)
    codec = topics.codecs["events"]
    broken = codec.encode(event(999, messageId="broken"))[:-4]
    topics.send("events", [event(i) for i in range(10)], key_field="userId")
    topics.send_raw("events", broken, partition=0)
    topics.send("events", [event(i) for i in range(10, 20)], key_field="userId")
    with running_sink(current) as sink:
        wait_until(lambda: drained(current, sink.group_id, ("events",)))
        [(value, headers)] = read_dead_letters(current, 1)
    assert scalar(clickhouse, "SELECT count() FROM events") == 20
    assert value == broken
    assert headers["feedhouse.error"].startswith("insert:"), headers["feedhouse.error"]


def test_event_times_outside_datetime64_are_stored_clamped(settings: Settings, clickhouse: Client) -> None:
    current = fast(settings)
    topics = Topics(current)
    topics.send(
        "events",
        [event(1, timestamp=-(10**17)), event(2, receivedAt=10**17), event(3)],
        key_field="userId",
    )
    with running_sink(current) as sink:
        wait_until(lambda: drained(current, sink.group_id, ("events",)))
    found = clickhouse.query(
        "SELECT message_id, toUnixTimestamp64Micro(timestamp), toUnixTimestamp64Micro(received_at)"
        " FROM events"
    ).result_rows
    stored = {str(message): (int(timestamp), int(received)) for message, timestamp, received in found}
    assert stored == {
        "m-1": (MIN_MICROS, T0 + 1 + 1000),
        "m-2": (T0 + 2, MAX_MICROS),
        "m-3": (T0 + 3, T0 + 3 + 1000),
    }
