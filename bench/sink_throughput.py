"""Sink throughput into chDB, side by side with its ceilings, on the embedded stack.

    python -m bench.sink_throughput [--events 100000]

1. ceiling: the same rows (already built) inserted with a bare ``client.insert`` into a copy of
   ``events``, row-oriented (clickhouse-connect's default) and column-oriented (what the sink does);
2. the sink: Avro records on a Tansu topic -> ``Sink`` thread -> ``events``, timed from partition
   assignment until every offset is committed (consume + decode + rows + insert + commit);
3. free-form objects: the same rows into tables whose properties/traits/context are the JSON
   type, fed JSON strings and dicts, against String columns.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer, TopicPartition

from avro.codec import AvroCodec
from clickhouse.client import close_clients, database_for, get_client
from clickhouse.migrate import migrate
from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker
from feedhouse.kafka import consumer_config, ensure_topics, producer_config
from feedhouse.settings import Settings
from sink.consumer import Sink
from sink.processors import EVENT_COLUMNS, process_event

T0 = 1_700_000_000_000_000
BATCH = 20_000


def segment_event(i: int, rng: random.Random) -> dict[str, Any]:
    """A track or identify call shaped like analytics.js sends them (about 500 bytes of Avro)."""
    context = {
        "library": {"name": "analytics.js", "version": "next-1.70.0"},
        "ip": f"10.0.{i % 255}.{i % 7}",
        "locale": "en-US",
        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36",
        "page": {"path": f"/p/{i % 100}", "url": f"https://shop.example.com/p/{i % 100}", "title": "Shop"},
    }
    identify = i % 4 == 0
    properties = {"revenue": round(rng.random() * 100, 2), "currency": "USD", "product_id": f"p{i % 500}"}
    traits = {"email": f"user{i % 10_000}@example.com", "plan": rng.choice(["free", "pro"]), "logins": i % 50}
    return {
        "type": "identify" if identify else "track",
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "userId": f"user-{i % 10_000}",
        "anonymousId": f"anon-{i % 30_000}",
        "groupId": None,
        "previousId": None,
        "event": None if identify else "Order Completed",
        "name": None,
        "category": None,
        "timestamp": T0 + i * 1000,
        "receivedAt": T0 + i * 1000 + 50,
        "originalTimestamp": "2023-11-14T22:13:20.000Z",
        "sentAt": None,
        "properties": None if identify else orjson.dumps(properties).decode(),
        "traits": orjson.dumps(traits).decode() if identify else None,
        "context": orjson.dumps(context).decode(),
        "integrations": None,
        "extra": None,
        "sourceId": "bench",
    }


def report(label: str, count: int, seconds: float) -> None:
    print(f"  {label:<62s} {count / seconds:>9,.0f} rows/s  ({seconds:5.2f} s)")


def insert_all(client: Client, table: str, rows: list[tuple[Any, ...]], *, column_oriented: bool) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        data: Any = list(zip(*chunk, strict=True)) if column_oriented else chunk
        client.insert(table, data, column_names=list(EVENT_COLUMNS), column_oriented=column_oriented)
    return time.perf_counter() - started


def copy_of_events(client: Client, database: str, name: str, objects_type: str) -> str:
    """A table like ``events`` with properties/traits/context of ``objects_type``."""
    ddl = str(client.command(f"SHOW CREATE TABLE `{database}`.events"))
    ddl = ddl.replace("\\n", "\n").replace("\\'", "'")
    ddl = ddl.replace(f"{database}.events", f"{database}.{name}", 1)
    for column in ("properties", "traits", "context"):
        ddl = ddl.replace(f"`{column}` String", f"`{column}` {objects_type}")
    client.command(ddl)
    return name


def median_of(repeat: int, client: Client, database: str, table: str, data: list[tuple[Any, ...]]) -> float:
    """Median seconds of ``repeat`` column-oriented inserts of ``data`` into an emptied ``table``."""
    times = []
    for _ in range(repeat):
        client.command(f"TRUNCATE TABLE `{database}`.{table}")
        times.append(insert_all(client, table, data, column_oriented=True))
    return statistics.median(times)


def ceiling(client: Client, database: str, rows: list[tuple[Any, ...]], repeat: int) -> None:
    table = copy_of_events(client, database, "events_ceiling", "String")
    client.insert(table, rows[:10], column_names=list(EVENT_COLUMNS))  # warm-up (lazy imports)
    client.command(f"TRUNCATE TABLE `{database}`.{table}")
    seconds = insert_all(client, table, rows, column_oriented=False)
    report("ceiling: bare client.insert, row-oriented", len(rows), seconds)
    seconds = median_of(repeat, client, database, table, rows)
    report("ceiling: bare client.insert, column-oriented (median)", len(rows), seconds)


def json_columns(client: Client, database: str, rows: list[tuple[Any, ...]], repeat: int) -> None:
    objects = [EVENT_COLUMNS.index(c) for c in ("properties", "traits", "context")]
    as_dicts = [
        tuple((orjson.loads(v) if v else {}) if i in objects else v for i, v in enumerate(row))
        for row in rows
    ]
    as_text = [tuple((v or "{}") if i in objects else v for i, v in enumerate(row)) for row in rows]
    table = copy_of_events(client, database, "events_json", "JSON")
    for label, data in (("JSON strings", as_text), ("dicts", as_dicts)):
        seconds = median_of(repeat, client, database, table, data)
        report(f"JSON-type properties/traits/context <- {label} (median)", len(rows), seconds)


def committed_all(settings: Settings, group: str, ends: dict[int, int]) -> bool:
    consumer = Consumer(consumer_config(settings, group))
    try:
        topic = settings.topic("events")
        offsets = consumer.committed([TopicPartition(topic, p) for p in ends], timeout=10)
        return all(tp.offset >= ends[tp.partition] for tp in offsets)
    finally:
        consumer.close()


def sink_run(settings: Settings, records: list[dict[str, Any]]) -> None:
    codec = AvroCodec("event")
    producer = Producer(producer_config(settings))
    started = time.perf_counter()
    ends: dict[int, int] = {}

    def delivered(error: Any, message: Any) -> None:
        if error is None:
            ends[message.partition()] = max(ends.get(message.partition(), 0), message.offset() + 1)

    for record in records:
        producer.produce(
            settings.topic("events"), codec.encode(record), record["userId"].encode(), on_delivery=delivered
        )
        producer.poll(0)
    producer.flush(60)
    seconds = time.perf_counter() - started
    report("(setup: produce the Avro events to Tansu)", len(records), seconds)

    sink = Sink(settings)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    sink.assigned.wait(60)
    started = time.perf_counter()
    while not committed_all(settings, sink.group_id, ends):
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    stop.set()
    thread.join(60)
    report("sink: consume, decode, rows, insert, commit", len(records), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per bare-insert figure (median)")
    args = parser.parse_args()
    rng = random.Random(7)
    records = [segment_event(i, rng) for i in range(args.events)]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        settings = settings_module.load(
            {},
            kafka_bootstrap_servers=broker.bootstrap,
            data_dir=Path(tmp),
            kafka_session_timeout_ms=2000,
            kafka_heartbeat_interval_ms=500,
            sink_batch_rows=BATCH,
        )
        ensure_topics(settings)
        client = get_client(settings)
        database = database_for(settings)
        migrate(client, database)
        rows = [process_event(record) for record in records]
        print(f"{len(records):,} events, batches of {BATCH:,}, chDB at {settings.effective_clickhouse_url}")
        ceiling(client, database, rows, args.repeat)
        sink_run(settings, records)
        json_columns(client, database, rows, args.repeat)
        close_clients()


if __name__ == "__main__":
    main()
