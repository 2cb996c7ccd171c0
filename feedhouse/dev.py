"""``feedhouse dev``: the whole product on one machine, on embedded defaults.

Starts the embedded Tansu broker, creates the topics, applies the ClickHouse migrations
(chDB under the data directory), starts one identity worker process, and serves the gateway
(ingestion + read API + admin API) with the sink and the audience evaluator and senders inside
the same process (chDB is owned by one process).
Ctrl-C stops everything. The embedded broker keeps its data in memory, so each start begins
from empty topics; the ClickHouse data of the previous run is cleared too, because identity
state lives in Kafka and both must start together.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys

import uvicorn

from feedhouse import logs
from feedhouse.broker import EmbeddedBroker, die_with_parent
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.kafka import ensure_topics
from feedhouse.server import create_app
from feedhouse.settings import Settings, to_env

BANNER = """
Feedhouse is running (embedded: Tansu broker, chDB, 1 identity worker, sink and audiences in
the gateway).

  Ingest (Segment HTTP API)  {url}/v1/batch   (also /v1/track, /v1/identify, ...)
  Write key                  {write_key}       (HTTP Basic user name, empty password)
  Read API                   {url}/v1/profiles/{{id}}, /v1/feed, ...
  Read token                 {read_token}      (Authorization: Bearer ...)
  Admin token                {admin_token}     (Authorization: Bearer ...; /v1/traits,
                                                  /v1/audiences, /v1/destinations)
  Metrics / health           {url}/metrics  {url}/readyz
  Kafka                      {kafka}
  ClickHouse (chDB)          {clickhouse}
  Data directory             {data_dir}

Try:
  curl -u {write_key}: {url}/v1/track -H 'Content-Type: application/json' \\
       -d '{{"userId": "user-1", "event": "Signed Up"}}'
  curl -H 'Authorization: Bearer {read_token}' {url}/v1/profiles/user-1/timeline

Ctrl-C stops everything.
"""


def run_dev(base: Settings) -> int:
    data_dir = base.data_dir.resolve()
    for stale in ("clickhouse", "identity"):
        shutil.rmtree(data_dir / stale, ignore_errors=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    logs.configure(base.log_level)
    broker = EmbeddedBroker(port=base.kafka_port, log_path=data_dir / "tansu.log").start()
    settings = dataclasses.replace(
        base,
        kafka_bootstrap_servers=broker.bootstrap,
        data_dir=data_dir,
        embedded_sink=True,
        embedded_audiences=True,
        http_workers=1,
        changelog_seals=True,  # the embedded broker is Tansu
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        ensure_topics(settings)
        migrate(get_client(settings), database_for(settings))
        worker_log = open(data_dir / "worker.log", "ab")  # noqa: SIM115
        worker = subprocess.Popen(
            [sys.executable, "-m", "feedhouse.cli", "worker"],
            env={**os.environ, **to_env(dataclasses.replace(settings, metrics_port=0))},
            stdout=worker_log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # no orphan worker if `feedhouse dev` is killed hard
        )
        url = f"http://{settings.http_host}:{settings.http_port}"
        print(
            BANNER.format(
                url=url,
                write_key=settings.write_keys[0],
                read_token=settings.read_token,
                admin_token=settings.admin_token,
                kafka=broker.bootstrap,
                clickhouse=settings.effective_clickhouse_url,
                data_dir=data_dir,
            ),
            flush=True,
        )
        uvicorn.run(
            create_app(settings),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
        close_clients()
        broker.stop()
    return 0
