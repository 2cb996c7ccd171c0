"""Sink rows/s into ClickHouse, side by side with a bare insert of the same rows.

    python -m bench.sink_throughput [--events 200000] [--repeat 3] [--json-columns]

On a fresh Tansu broker and chDB (or the server of ``FEEDHOUSE_CLICKHOUSE_URL``), in one run:

1. ceiling: the same rows (already built by the events row builder, ``clickhouse.tables``) inserted with a
   bare clickhouse-connect ``client.insert`` into a copy of ``events``, in batches of the
   sink's batch size, column-oriented (what the sink does; median of ``--repeat``) and
   row-oriented (clickhouse-connect's default, for reference);
2. the sink: the Avro records on the events topic, then ``feedhouse sink`` as its own
   process (its own chDB directory: chDB locks a directory per process), timed from its
   partition assignment until every offset is committed (consume, decode, rows, insert,
   commit: a committed event is queryable);
3. with ``--json-columns``: the same rows into tables whose properties/traits/context are the
   ``JSON`` type, fed JSON strings and dicts, against String columns (a schema experiment).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from bench.common import Figure, Result, bench_stack, median, print_table, scaled, stop_on_sigterm
from bench.plots import plot_lines, plot_vs_ceiling
from bench.processes import Child, CpuMeter, own_memory, wait_until
from bench.profile import profiled
from bench.traffic import OffsetWatcher, encoded, normalized, produce, segment_calls
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.clickhouse.tables import EVENTS, Row
from feedhouse.ids import DEFAULT_PLACEHOLDERS
from feedhouse.settings import Settings

EVENT_COLUMNS = EVENTS.column_names
process_event = EVENTS.row_builder(placeholders=DEFAULT_PLACEHOLDERS)

BATCH = 20_000  # rows per insert: the sink's default batch bound (FEEDHOUSE_SINK_BATCH_ROWS)


def insert_all(client: Client, table: str, rows: list[Row], *, column_oriented: bool) -> float:
    """Seconds to insert ``rows`` in batches of :data:`BATCH` with a bare ``client.insert``."""
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        data: Any = list(zip(*chunk, strict=True)) if column_oriented else chunk
        client.insert(
            table,
            data,
            column_names=list(EVENT_COLUMNS),
            column_oriented=column_oriented,
            settings={"max_partitions_per_insert_block": 0},
        )
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


def median_insert(client: Client, database: str, table: str, rows: list[Row], repeat: int) -> float:
    """Median seconds of ``repeat`` column-oriented inserts of ``rows`` into an emptied ``table``."""
    times = []
    for _ in range(repeat):
        client.command(f"TRUNCATE TABLE `{database}`.{table}")
        times.append(insert_all(client, table, rows, column_oriented=True))
    return median(times)


def ceiling(client: Client, database: str, rows: list[Row], repeat: int) -> dict[str, float]:
    table = copy_of_events(client, database, "events_ceiling", "String")
    insert_all(client, table, rows[:1000], column_oriented=True)  # warm-up (lazy imports, first part)
    client.command(f"TRUNCATE TABLE `{database}`.{table}")
    row_oriented = len(rows) / insert_all(client, table, rows, column_oriented=False)
    column_oriented = len(rows) / median_insert(client, database, table, rows, repeat)
    return {"column_oriented": column_oriented, "row_oriented": row_oriented}


def json_columns(client: Client, database: str, rows: list[Row], repeat: int) -> dict[str, float]:
    objects = [EVENT_COLUMNS.index(c) for c in ("properties", "traits", "context")]
    as_dicts = [
        tuple((orjson.loads(v) if v else {}) if i in objects else v for i, v in enumerate(row))
        for row in rows
    ]
    as_text = [tuple((v or "{}") if i in objects else v for i, v in enumerate(row)) for row in rows]
    table = copy_of_events(client, database, "events_json", "JSON")
    return {
        f"json_type_from_{label}": len(rows) / median_insert(client, database, table, data, repeat)
        for label, data in (("strings", as_text), ("dicts", as_dicts))
    }


def sink_process(
    current: Settings, workdir: Any, broker: int, ends: dict[int, int], args: argparse.Namespace
) -> dict[str, Any]:
    """Run ``feedhouse sink``; seconds from its partition assignment to every offset committed."""
    timeout = args.timeout
    sink = Child.feedhouse("sink", ["sink"], current, workdir, FEEDHOUSE_LOG_LEVEL="INFO")
    watcher = OffsetWatcher(current, f"{current.topic_prefix}sink")
    topic = current.topic("events")
    try:

        def assigned() -> bool:
            sink.check()
            return sink.log_contains('"partitions assigned"')

        wait_until(assigned, 60, "sink partition assignment", interval=0.02)
        started = time.perf_counter()
        series: list[tuple[float, int]] = [(0.0, 0)]
        with (
            profiled(sink.pid, "sink.sink", args.profile),
            CpuMeter({"sink": sink.pid, "tansu": broker}) as cpu,
        ):
            now = follow_commits(sink, watcher, topic, ends, started, series, timeout)
        print(f"cores used (assignment to last commit): {cpu.line()}")
        sink.memory()
        return {"seconds": now, "series": series, "memory": sink.memory_seen, "cpu": cpu}
    finally:
        watcher.close()
        sink.stop()


def follow_commits(
    sink: Child,
    watcher: OffsetWatcher,
    topic: str,
    ends: dict[int, int],
    started: float,
    series: list[tuple[float, int]],
    timeout: float,
) -> float:
    """Poll the sink group's commits until they reach ``ends``; seconds since ``started``."""
    while True:
        sink.check()
        committed = watcher.committed(topic, ends)
        now = time.perf_counter() - started
        series.append((now, sum(min(committed[p], end) for p, end in ends.items())))
        if all(committed[p] >= end for p, end in ends.items()):
            return now
        if now > timeout:
            raise TimeoutError(f"sink not done after {timeout:.0f} s: {series[-1]}")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> Result:
    result = Result("sink", params={"events": args.events, "batch_rows": BATCH, "repeat": args.repeat})
    print(f"generating {args.events:,} events ...", flush=True)
    records = normalized(segment_calls(args.events, seed=41))
    rows = [process_event(record) for record in records]
    with bench_stack("sink", sink_batch_rows=BATCH) as (current, workdir, broker):
        client = get_client(current)
        database = database_for(current)
        migrate(client, database)
        rates = ceiling(client, database, rows, args.repeat)
        print(f"ceiling: bare client.insert, column-oriented {rates['column_oriented']:,.0f} rows/s")
        print(f"         bare client.insert, row-oriented    {rates['row_oriented']:,.0f} rows/s")
        if args.json_columns:
            rates.update(json_columns(client, database, rows, args.repeat))
            for label in ("json_type_from_strings", "json_type_from_dicts"):
                print(f"         {label.replace('_', ' ')}: {rates[label]:,.0f} rows/s")
        close_clients()
        ceiling_memory = own_memory("ceiling (bench process)")

        produced = produce(current, current.topic("events"), encoded(records), warmup=0)
        # The sink process gets a chDB directory of its own (chDB: one process per directory).
        sink_settings = dataclasses.replace(current, data_dir=workdir / "sink-data")
        sink_settings.data_dir.mkdir(parents=True, exist_ok=True)
        assert broker.process is not None
        run_info = sink_process(sink_settings, workdir, broker.process.pid, produced.ends, args)
    sink_rate = args.events / run_info["seconds"]
    print(f"sink: {sink_rate:,.0f} rows/s ({args.events:,} events in {run_info['seconds']:.2f} s)")
    result.add(
        Figure(
            "sink",
            "events topic -> ClickHouse (consume, decode, insert, commit)",
            sink_rate,
            "rows/s",
            ceiling=rates["column_oriented"],
            ceiling_label="bare client.insert of the same rows",
        )
    )
    result.memory = [*run_info["memory"], ceiling_memory]
    result.details = {
        "ceilings_rows_per_s": {key: round(value) for key, value in rates.items()},
        "sink_seconds": round(run_info["seconds"], 3),
        "cpu": run_info["cpu"].to_json(),
        "cpu_us_per_row": {
            "sink": run_info["cpu"].micros_per("sink", sink_rate),
            "ceiling (bare insert)": round(1e6 / rates["column_oriented"], 1),
        },
        "clickhouse": current.effective_clickhouse_url.split("@")[-1],
    }
    plot_vs_ceiling(result, "Sink vs bare insert")
    series = run_info["series"]
    plot_lines(
        result,
        "sink_progress.png",
        f"Sink progress ({args.events:,} events, batches of {BATCH:,})",
        {
            "sink: rows committed": ([s[0] for s in series], [s[1] for s in series]),
            "bare insert pace": ([0, args.events / rates["column_oriented"]], [0, args.events]),
        },
        "seconds since partition assignment",
        "rows",
    )
    return result


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=scaled(200_000), help="events (BENCH_SCALE x 200k)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per bare-insert figure (median)")
    parser.add_argument("--json-columns", action="store_true", help="also time JSON-type columns")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", action="store_true", help="py-spy the sink process")
    result = run(parser.parse_args())
    print_table(result)
    result.save()


if __name__ == "__main__":
    main()
