"""The HTTP server of a Feedhouse process: one Starlette app composing the stages it hosts.

Ingestion (``feedhouse.gateway``), the read API (``feedhouse.read``), the admin API of audiences
and destinations (``feedhouse.audiences.admin``), the Regulations API (``feedhouse.privacy``),
the app's pages (``feedhouse.app``), health and metrics; with embedded chDB it also hosts the
sink, the regulation executor and the audience evaluator and senders, because one process owns
the chDB directory. The lifespan owns the long-lived parts: the Kafka producer, the embedded
sink, executor and audience threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from feedhouse import logs
from feedhouse import settings as settings_module
from feedhouse.app.routes import app_routes
from feedhouse.audiences.admin import admin_routes, audience_definitions
from feedhouse.auth import ADMIN, Tokens
from feedhouse.clickhouse.client import get_client
from feedhouse.gateway.ingest import Ingestor
from feedhouse.gateway.publisher import Publisher
from feedhouse.gateway.routes import ingestion_routes
from feedhouse.health import Health
from feedhouse.http import guarded, json_response
from feedhouse.kafka import ensure_topics
from feedhouse.privacy.api import regulation_routes
from feedhouse.privacy.executor import Executor
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.suppressions import SuppressionList
from feedhouse.read.api import read_routes
from feedhouse.read.lanes import Lanes
from feedhouse.settings import Settings
from feedhouse.status import status as status_report

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    publisher: Publisher | None = None,
    *,
    health: Health | None = None,
    processes: Callable[[], dict[str, dict[str, Any]]] | None = None,
) -> Starlette:
    """The app. ``publisher`` is built by the lifespan unless given (tests).

    ``health`` may come with checks registered already (``feedhouse dev`` registers the
    processes it supervises, and ``processes`` reports them for ``/v1/status``); the app adds
    Kafka, ClickHouse and, when it hosts one, the embedded sink.
    """
    state: dict[str, Ingestor] = {}
    health = health or Health()
    regulations = RegulationLog(settings)
    tokens = Tokens(settings)

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
        # What every process follows from the privacy topics (not in unit tests: no broker).
        suppressions = SuppressionList(settings).start() if owned else None
        if owned:
            regulations.start()
            health.register_default("regulations", regulations.health)
        if suppressions is not None:
            health.register_default("suppressions", suppressions.health)
        state["ingestor"] = Ingestor(settings, active, suppressions, regulations if owned else None)
        health.register_default("kafka", lambda: kafka_health(active))
        health.register_default("clickhouse", lambda: clickhouse_health(settings))
        stop_sink = threading.Event()
        sink = None
        if settings.embedded_sink:
            from feedhouse.sink.embedded import EmbeddedSink

            sink = await asyncio.to_thread(EmbeddedSink(settings, stop_sink).start)
            health.register("sink", sink.health)
            # Regulations are carried out where ClickHouse is written.
            executor = Executor(settings, get_client(settings, purpose="privacy"), regulations).start(
                stop_sink
            )
            health.register("privacy", executor.health)
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
            if sink is not None:
                stop_sink.set()
                await asyncio.to_thread(sink.join, 30)
                await asyncio.to_thread(executor.join, 10)
            if owned:
                regulations.stop()
            if owned:
                active.close()
            if suppressions is not None:
                suppressions.stop()

    def ingestor() -> Ingestor:
        return state["ingestor"]

    async def healthz(_request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        report = await asyncio.to_thread(health.report)
        failing = sorted(name for name, (ok, _) in report.items() if not ok)
        body = {
            "status": "unavailable" if failing else "ready",
            "failing": failing,
            "components": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in report.items()},
        }
        return json_response(body, 503 if failing else 200)

    async def status_endpoint(request: Request) -> Response:
        tokens.require(request, ADMIN)
        report = await asyncio.to_thread(
            status_report, settings, health, get_client(settings), processes() if processes else None
        )
        return json_response(report, headers={"Cache-Control": "no-store"})

    async def metrics_endpoint(_request: Request) -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = ingestion_routes(ingestor, f"{settings.http_host}:{settings.http_port}")
    # One set of lane clients for the read API's and the pages' side-by-side queries.
    lanes = Lanes(lambda lane: get_client(settings, f"app-{lane}"))
    routes += read_routes(settings, lambda: get_client(settings), audience_definitions, lanes)
    routes += admin_routes(settings, lambda: get_client(settings))
    routes += regulation_routes(settings, regulations)
    # The app's pages at / (sign-in, people, timelines, feed, groups, audiences).
    routes += app_routes(
        settings,
        lambda: get_client(settings),
        lanes,
        health=health,
        processes=processes,
    )
    routes += [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/v1/status", guarded("/v1/status", status_endpoint)),
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


def kafka_health(publisher: Publisher) -> tuple[bool, str]:
    return (True, "reachable") if publisher.reachable() else (False, "unreachable")


def clickhouse_health(settings: Settings) -> tuple[bool, str]:
    try:
        get_client(settings).query("SELECT count() FROM events WHERE 0")
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"[:300]
        if "UNKNOWN_DATABASE" in detail or "UNKNOWN_TABLE" in detail:
            detail = f"schema missing, run `feedhouse migrate`: {detail}"
        return False, detail
    return True, "answers"


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
