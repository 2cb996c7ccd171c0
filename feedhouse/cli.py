"""``feedhouse``: one command line for every process of the product.

Every subcommand reads the same settings from the environment (see README, "Configuration");
flags only override the few values people change by hand.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from feedhouse import logs, settings

Command = Callable[[argparse.Namespace], int]


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    current = settings.load()
    logs.configure(current.log_level)
    host = args.host or current.http_host
    port = args.port or current.http_port
    workers = args.workers or current.http_workers
    print(f"feedhouse gateway on http://{host}:{port} ({workers} worker(s))", flush=True)
    uvicorn.run(
        "feedhouse.server:app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _broker(args: argparse.Namespace) -> int:
    from feedhouse.broker import EmbeddedBroker

    current = settings.load()
    broker = EmbeddedBroker(port=args.port or current.kafka_port).start()
    print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}", flush=True)
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        while not stop["now"] and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.close()
    return 0


def _worker(_args: argparse.Namespace) -> int:
    from feedhouse.streams.worker import run_worker

    current = settings.load()
    logs.configure(current.log_level)
    return run_worker(current)


def _migrate(args: argparse.Namespace) -> int:
    from feedhouse.clickhouse.client import close_clients, database_for, get_client
    from feedhouse.clickhouse.migrate import MigrationError, prepare, rollback

    current = settings.load()
    logs.configure(current.log_level)
    database = database_for(current)
    try:
        client = get_client(current)
        if args.down:
            done = rollback(client, database, args.down, cluster=current.clickhouse_cluster)
            print(f"reverted {len(done)} migration(s) in {database}: {[m.label for m in done]}", flush=True)
        else:
            done = prepare(client, database, current.retention_days, current.clickhouse_cluster)
            print(f"applied {len(done)} migration(s) to {database}: {[m.label for m in done]}", flush=True)
    except MigrationError as exc:
        print(f"feedhouse migrate: {exc}", file=sys.stderr)
        return 1
    finally:
        close_clients()
    return 0


def _sink(args: argparse.Namespace) -> int:
    from feedhouse.sink.main import run_standalone

    current = settings.load()
    logs.configure(current.log_level)
    return run_standalone(current, apply_migrations=not args.no_migrate)


def _audiences(_args: argparse.Namespace) -> int:
    from feedhouse.audiences.runner import run_standalone

    current = settings.load()
    logs.configure(current.log_level)
    return run_standalone(current)


def _dev(args: argparse.Namespace) -> int:
    from feedhouse.dev import run_dev

    return run_dev(settings.load(), fresh=args.fresh)


def _status(args: argparse.Namespace) -> int:
    import httpx
    import orjson

    from feedhouse.status import render

    current = settings.load()
    url = args.url or f"http://{current.http_host}:{current.http_port}"
    try:
        response = httpx.get(
            f"{url}/v1/status", headers={"Authorization": f"Bearer {current.admin_token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"feedhouse status: no Feedhouse answers at {url}: {exc}", file=sys.stderr)
        return 2
    if response.status_code != 200:
        print(
            f"feedhouse status: {url} answered {response.status_code}: {response.text[:300]}", file=sys.stderr
        )
        return 2
    report = response.json()
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() if args.json else render(report))
    return 0 if report.get("ready") else 1


def _topics(_args: argparse.Namespace) -> int:
    from feedhouse.kafka import ensure_topics

    current = settings.load()
    ensure_topics(current)
    print("topics ready", flush=True)
    return 0


def _env(_args: argparse.Namespace) -> int:
    print(settings.env_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedhouse",
        description="Feedhouse: a self-hosted Segment destination (gateway, Kafka, identity, ClickHouse).",
        epilog="Configuration comes from the environment: `feedhouse env` lists every variable.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gateway = sub.add_parser("gateway", help="run the HTTP gateway (Segment Tracking API, webhook, read API)")
    gateway.add_argument("--host", help="bind address (FEEDHOUSE_HTTP_HOST)")
    gateway.add_argument("--port", type=int, help="port (FEEDHOUSE_HTTP_PORT)")
    gateway.add_argument("--workers", type=int, help="worker processes (FEEDHOUSE_HTTP_WORKERS)")
    gateway.set_defaults(run=_gateway)

    broker = sub.add_parser("broker", help="run the embedded Tansu broker and print its address")
    broker.add_argument("--port", type=int, help="port (FEEDHOUSE_KAFKA_PORT)")
    broker.set_defaults(run=_broker)

    worker = sub.add_parser(
        "worker", help="run one identity worker (router + Faust agents); run several to scale"
    )
    worker.set_defaults(run=_worker)

    migrate = sub.add_parser("migrate", help="apply pending ClickHouse migrations (or revert with --down N)")
    migrate.add_argument("--down", type=int, metavar="N", help="revert the last N applied migrations")
    migrate.set_defaults(run=_migrate)

    sink = sub.add_parser("sink", help="run the Kafka -> ClickHouse sink (migrates first, serves /metrics)")
    sink.add_argument(
        "--no-migrate", action="store_true", help="do not apply migrations; exit 3 if any is pending"
    )
    sink.set_defaults(run=_sink)

    audiences = sub.add_parser(
        "audiences",
        help="run the audience evaluator and destination senders (with a ClickHouse server; run one)",
    )
    audiences.set_defaults(run=_audiences)

    dev = sub.add_parser(
        "dev", help="run everything embedded: broker, gateway, worker, sink, chDB (Ctrl-C stops)"
    )
    dev.add_argument("--fresh", action="store_true", help="wipe the data directory first")
    dev.set_defaults(run=_dev)

    status = sub.add_parser(
        "status", help="show every component, lag per topic, what is stored (exit 1 when not ready)"
    )
    status.add_argument("--url", help="base URL of the running server (default: FEEDHOUSE_HTTP_HOST:PORT)")
    status.add_argument("--json", action="store_true", help="print the JSON report")
    status.set_defaults(run=_status)

    topics = sub.add_parser("topics", help="create Feedhouse's topics with their partition counts")
    topics.set_defaults(run=_topics)

    env = sub.add_parser("env", help="print every configuration variable with its default")
    env.set_defaults(run=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except settings.SettingsError as exc:
        print(f"feedhouse: configuration error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
