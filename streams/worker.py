"""``feedhouse worker``: one identity worker process (router thread + Faust agents).

Several workers with the same settings share the work: the router's consumer group splits
the events partitions, Faust's consumer group splits the identity topics' partitions.
"""

from __future__ import annotations

import logging
import threading

import faust
from prometheus_client import start_http_server

from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from feedhouse.streams.app import create_app
from feedhouse.streams.router import Router

log = logging.getLogger(__name__)


def run_worker(settings: Settings) -> int:
    ensure_topics(settings)
    server, _ = start_http_server(settings.metrics_port, addr=settings.http_host)
    log.info(
        "identity worker metrics", extra={"url": f"http://{settings.http_host}:{server.server_port}/metrics"}
    )
    stop = threading.Event()
    router = Router(settings)
    router_thread = threading.Thread(target=router.run, args=(stop,), name="identity-router", daemon=True)
    identity = create_app(settings)
    # Logging stays as feedhouse.logs configured it (JSON lines), not Faust's own format.
    worker = faust.Worker(identity.app, loglevel=settings.log_level, quiet=True, override_logging=False)
    router_thread.start()
    try:
        worker.execute_from_commandline()
    finally:
        stop.set()
        router_thread.join(timeout=15)
        server.shutdown()
    return 0
