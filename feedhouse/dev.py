"""``feedhouse dev``: the whole product on one machine, on embedded defaults, kept across restarts.

Supervised child processes (``feedhouse.supervisor``), started in order and restarted when
they die: the object store that is the broker's disk (``feedhouse.objectstore``), the Tansu
broker, one identity worker. This process serves HTTP (ingestion, read API, the app's pages at
/, health, metrics, status, administration of audiences, destinations and regulations) and
hosts the sink, the regulation executor and the audience evaluator and senders, because chDB
(ClickHouse in-process, under the data directory) is owned by one process. Everything lives
under ``FEEDHOUSE_DATA_DIR``:

    clickhouse/   chDB's data          broker/   topics, offsets, groups (the object store)
    identity/     Faust table files    logs/     one log per child process

Stopping (Ctrl-C, SIGTERM, or SIGKILL of the process group) and starting again resumes where it
stopped; ``--fresh`` wipes the data directory first. With ``FEEDHOUSE_BROKER_STORAGE=memory``
the broker forgets everything at each start, so ClickHouse and identity state are wiped too
(they must start together).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from feedhouse import logs
from feedhouse.broker import objectstore_command, tansu_command, tansu_env
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import prepare
from feedhouse.health import Health
from feedhouse.kafka import ensure_topics
from feedhouse.server import create_app
from feedhouse.settings import Settings, SettingsError, to_env
from feedhouse.supervisor import ChildSpec, StartError, Supervisor, port_open, wait_for_ports

DATA_PARTS = ("clickhouse", "broker", "identity")

BANNER = """
Feedhouse is running (embedded: Tansu broker on {storage} storage, chDB, 1 identity worker,
sink, privacy executor and audiences in this process). Data: {data_dir}

  App (people, feed)         {url}/            sign in with the read token: {read_token}
  Ingest (Segment HTTP API)  {url}/v1/batch   (also /v1/track, /v1/identify, ...)
  Write key                  {write_key}       (HTTP Basic user name, empty password)
  Read API                   {url}/v1/profiles/{{id}}, /v1/feed, ...
  Read token                 {read_token}      (Authorization: Bearer ...; the app's sign-in)
  Profile API (Segment's)    {url}/v1/spaces/{space_id}/collections/users/profiles/user_id:{{id}}/traits
                             (HTTP Basic, the read token as user name)
  Admin token                {admin_token}     (Authorization: Bearer ...; /v1/traits,
                                                  /v1/audiences, /v1/destinations, /v1/regulations)
  Status                     feedhouse status   ({url}/v1/status, admin token)
  Metrics / health           {url}/metrics  {url}/readyz
  Kafka                      {kafka}
  ClickHouse (chDB)          {clickhouse}

Try:
  curl -u {write_key}: {url}/v1/track -H 'Content-Type: application/json' \\
       -d '{{"userId": "user-1", "event": "Signed Up"}}'
  curl -H 'Authorization: Bearer {read_token}' {url}/v1/profiles/user-1/timeline

Ctrl-C stops everything; starting again resumes with the same data (--fresh wipes it).
"""


# One machine runs one identity worker, so the topics need few partitions, and producers may
# gather longer: the embedded broker's cost is per record batch, not per event (`python -m
# bench.end_to_end`: 8 partitions and 2 ms, 180 µs of Tansu CPU per event; 2 and 25 ms, 23 µs),
# for up to 25 ms more before each acknowledgement. Either is kept when set in the environment.
EMBEDDED_PARTITIONS = 2
EMBEDDED_LINGER_MS = 25.0
LAYOUT_FILE = "layout.json"  # the partition count a data directory's topics were created with
PARTITIONS_BEFORE_LAYOUT = 8  # data directories from before the file: the default of then


def wipe(data_dir: Path) -> None:
    for part in DATA_PARTS:
        shutil.rmtree(data_dir / part, ignore_errors=True)
    (data_dir / LAYOUT_FILE).unlink(missing_ok=True)


def embedded_shape(data_dir: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings overrides of the embedded stack for ``data_dir`` (and records a new directory's).

    A topic's partition count cannot change under its data (identity state is placed by it), so
    a data directory keeps the count it was created with; asking for another is an error.
    """
    shape: dict[str, Any] = {}
    if "FEEDHOUSE_KAFKA_LINGER_MS" not in environ:
        shape["kafka_linger_ms"] = EMBEDDED_LINGER_MS
    asked = environ.get("FEEDHOUSE_EVENTS_PARTITIONS")
    layout = data_dir / LAYOUT_FILE
    broker = data_dir / "broker"
    if layout.exists():
        partitions = int(orjson.loads(layout.read_bytes())["events_partitions"])
    elif broker.exists() and any(broker.iterdir()):
        partitions = PARTITIONS_BEFORE_LAYOUT
    else:
        partitions = int(asked) if asked else EMBEDDED_PARTITIONS
        layout.write_bytes(orjson.dumps({"events_partitions": partitions}))
    if asked and int(asked) != partitions:
        raise SettingsError(
            f"FEEDHOUSE_EVENTS_PARTITIONS={asked}, but the topics in {data_dir} have {partitions}"
            " partitions (start with --fresh to create them anew)"
        )
    shape["events_partitions"] = partitions
    return shape


def child_specs(settings: Settings) -> list[ChildSpec]:
    """The supervised processes of the embedded stack, in start order."""
    data_dir, logs_dir = settings.data_dir, settings.data_dir / "logs"
    disk = settings.broker_storage == "disk"
    kafka_port, disk_port = settings.kafka_port, settings.broker_disk_port
    specs: list[ChildSpec] = []
    if disk:
        specs.append(
            ChildSpec(
                "objectstore",
                objectstore_command(data_dir / "broker", disk_port),
                {},
                logs_dir / "objectstore.log",
                ports=(disk_port,),
                ready=lambda: port_open(disk_port),
            )
        )
    specs.append(
        ChildSpec(
            "broker",
            tansu_command(kafka_port, disk),
            tansu_env(disk_port if disk else None),
            logs_dir / "tansu.log",
            ports=(kafka_port,),
            ready=lambda: port_open(kafka_port),
        )
    )
    specs.append(
        ChildSpec(
            "identity-worker",
            [sys.executable, "-m", "feedhouse.cli", "worker"],
            to_env(dataclasses.replace(settings, metrics_port=0)),
            logs_dir / "worker.log",
        )
    )
    return specs


def run_dev(base: Settings, *, fresh: bool = False) -> int:
    data_dir = base.data_dir.resolve()
    if fresh or base.broker_storage == "memory":
        wipe(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    logs.configure(base.log_level)
    try:
        shape = embedded_shape(data_dir, os.environ)
    except SettingsError as exc:
        print(f"feedhouse dev: {exc}", file=sys.stderr, flush=True)
        return 1
    settings = dataclasses.replace(
        base,
        **shape,
        kafka_bootstrap_servers=f"127.0.0.1:{base.kafka_port}",
        data_dir=data_dir,
        embedded_sink=True,
        embedded_audiences=True,
        http_workers=1,
        changelog_seals=True,  # the embedded broker is Tansu
    )
    supervisor = Supervisor(child_specs(settings), port_timeout=settings.port_wait_seconds)
    try:
        wait_for_ports([settings.http_port], settings.port_wait_seconds, "HTTP server")
        supervisor.start()
        ensure_topics(settings)
        prepare(get_client(settings), database_for(settings), settings.retention_days)
    except StartError as exc:
        supervisor.stop()
        print(f"feedhouse dev: {exc}", file=sys.stderr, flush=True)
        return 1
    health = Health()
    health.register_many(supervisor.health, [spec.spec.name for spec in supervisor.children])
    try:
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(
            BANNER.format(
                url=url,
                storage=settings.broker_storage,
                write_key=settings.write_keys[0],
                read_token=settings.read_token,
                space_id=settings.space_id,
                admin_token=settings.admin_token,
                kafka=settings.kafka_bootstrap_servers,
                clickhouse=settings.effective_clickhouse_url,
                data_dir=data_dir,
            ),
            flush=True,
        )
        uvicorn.run(
            create_app(settings, health=health, processes=supervisor.status),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        supervisor.stop()
        close_clients()
    return 0
