"""``feedhouse sink``: the sink as a process of its own, with migrations, metrics and signals."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from prometheus_client import start_http_server

from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import pending, prepare
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from feedhouse.sink.consumer import Sink

log = logging.getLogger(__name__)


def run_standalone(settings: Settings, *, apply_migrations: bool = True) -> int:
    """Migrate (or check that nothing is pending), serve /metrics, run until SIGTERM/SIGINT.

    On a signal the sink stops consuming, writes and commits the batch it holds, and exits 0.
    Returns 3 when migrations are pending and ``apply_migrations`` is off.
    """
    database = database_for(settings)
    client = get_client(settings)
    if apply_migrations:
        applied = prepare(client, database, settings.retention_days, settings.clickhouse_cluster)
        if applied:
            log.info("migrations applied", extra={"migrations": [m.label for m in applied]})
    else:
        missing = pending(client, database)
        if missing:
            log.error(
                "migrations pending: run `feedhouse migrate`",
                extra={"migrations": [m.label for m in missing]},
            )
            return 3
    ensure_topics(settings)  # subscribing to a missing topic only logs errors; create them
    server, _ = start_http_server(settings.metrics_port, addr=settings.http_host)
    port = server.server_address[1]
    print(f"feedhouse sink: metrics on http://{settings.http_host}:{port}/metrics", flush=True)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        Sink(settings).run(stop)
    finally:
        server.shutdown()
        close_clients()
    return 0
