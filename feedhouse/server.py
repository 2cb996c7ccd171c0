"""The HTTP server of a Feedhouse process: one Starlette app composing the stages it hosts.

Ingestion (``feedhouse.gateway``), the read API (``feedhouse.read``), the admin API of audiences
and destinations (``feedhouse.audiences.admin``), health and metrics; with embedded chDB it
also hosts the sink and the audience evaluator and senders, because one process owns the chDB
directory. The lifespan owns the long-lived parts: the Kafka producer, the embedded sink
thread, the embedded audience threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from feedhouse import logs
from feedhouse import settings as settings_module
from feedhouse.audiences.admin import admin_routes, audience_definitions
from feedhouse.clickhouse.client import get_client
from feedhouse.gateway.ingest import Ingestor
from feedhouse.gateway.publisher import Publisher
from feedhouse.gateway.routes import ingestion_routes
from feedhouse.http import json_response
from feedhouse.kafka import ensure_topics
from feedhouse.read.api import read_routes
from feedhouse.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, publisher: Publisher | None = None) -> Starlette:
    """The app. ``publisher`` is built by the lifespan unless given (tests)."""
    state: dict[str, Ingestor] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        owned = publisher is None
        if owned:
            try:
                ensure_topics(settings, timeout=5.0)
            except Exception as exc:  # the broker may come later: readyz reports it meanwhile
                log.warning("could not ensure topics at startup", extra={"error": str(exc)})
        active = Publisher(settings) if owned else publisher
        assert active is not None
        state["ingestor"] = Ingestor(settings, active)
        stop_sink = threading.Event()
        sink_thread = None
        if settings.embedded_sink:
            from feedhouse.sink.embedded import start_embedded

            sink_thread = await asyncio.to_thread(start_embedded, settings, stop_sink)
        audiences = None
        if settings.embedded_audiences:
            from feedhouse.audiences.runner import start_embedded as start_audiences

            audiences = await asyncio.to_thread(start_audiences, settings, stop_sink)
        try:
            yield
        finally:
            if audiences is not None:
                stop_sink.set()
                await asyncio.to_thread(audiences.join, 30)
            if sink_thread is not None:
                stop_sink.set()
                await asyncio.to_thread(sink_thread.join, 30)
            if owned:
                active.close()

    def ingestor() -> Ingestor:
        return state["ingestor"]

    async def healthz(_request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        if await asyncio.to_thread(ingestor().publisher.reachable):
            return json_response({"status": "ready", "kafka": "reachable"})
        return json_response({"status": "unavailable", "kafka": "unreachable"}, 503)

    async def metrics_endpoint(_request: Request) -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = ingestion_routes(ingestor, f"{settings.http_host}:{settings.http_port}")
    routes += read_routes(settings, lambda: get_client(settings), audience_definitions)
    routes += admin_routes(settings, lambda: get_client(settings))
    routes += [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics_endpoint),
    ]
    middleware = [
        # Browsers on other origins (analytics.js) post here; credentials are the write key.
        Middleware(
            CORSMiddleware,
            allow_origins=["*"],
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            max_age=86400,
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def app() -> Starlette:
    """ASGI factory for uvicorn (an import string, so that ``--workers N`` can fork)."""
    current = settings_module.load()
    logs.configure(current.log_level)
    application = create_app(current)
    # Request handling allocates many short-lived objects; the default cyclic-GC threshold
    # (700 allocations) made collections ~8% of a worker's CPU. Objects alive at start-up are
    # frozen out of collections, and young-generation collections run 50x less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(35_000, 20, 20)
    return application
