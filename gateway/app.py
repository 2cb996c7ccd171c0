"""The gateway's Starlette application: routes, and the lifespan that owns the Kafka producer."""

from __future__ import annotations

import asyncio
import contextlib
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

from clickhouse.client import get_client
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from gateway.errors import Handler, HttpError, guarded, json_response
from gateway.ingest import Ingestor
from gateway.publisher import Publisher
from gateway.read_api import read_routes

log = logging.getLogger(__name__)

# Long and short paths: analytics.js posts to /v1/t, /v1/p, ... and batches to /v1/b.
SINGLE_ROUTES = {
    "identify": ("/v1/identify", "/v1/i"),
    "track": ("/v1/track", "/v1/t"),
    "page": ("/v1/page", "/v1/p"),
    "screen": ("/v1/screen", "/v1/s"),
    "group": ("/v1/group", "/v1/g"),
    "alias": ("/v1/alias", "/v1/a"),
}
BATCH_ROUTES = ("/v1/batch", "/v1/import", "/v1/b")


def create_app(settings: Settings, publisher: Publisher | None = None) -> Starlette:
    """The gateway app. ``publisher`` is built by the lifespan unless given (tests)."""
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
            # Embedded chDB belongs to one process: the one serving the read API hosts the sink.
            from sink.embedded import start_embedded

            sink_thread = await asyncio.to_thread(start_embedded, settings, stop_sink)
        try:
            yield
        finally:
            if sink_thread is not None:
                stop_sink.set()
                await asyncio.to_thread(sink_thread.join, 30)
            if owned:
                active.close()

    def ingestor() -> Ingestor:
        return state["ingestor"]

    def single(kind: str) -> Handler:
        async def handle(request: Request) -> Response:
            return await ingestor().single(request, kind)

        return handle

    async def batch(request: Request) -> Response:
        return await ingestor().batch(request)

    async def webhook(request: Request) -> Response:
        return await ingestor().webhook(request)

    async def project_settings(request: Request) -> Response:
        """What analytics.js fetches from Segment's CDN (``cdnURL`` pointed at the gateway):
        tells it to deliver to this gateway instead of api.segment.io."""
        write_key = request.path_params["write_key"]
        if not ingestor().write_keys.accepts(write_key):
            raise HttpError(404, "unknown_write_key", "no source with this write key")
        host = request.headers.get("host", f"{settings.http_host}:{settings.http_port}")
        return json_response(
            {
                "integrations": {
                    "Segment.io": {
                        "apiKey": write_key,
                        "apiHost": f"{host}/v1",
                        "protocol": request.url.scheme,
                    }
                },
                "plan": {
                    "track": {"__default": {"enabled": True}},
                    "identify": {"__default": {"enabled": True}},
                },
            }
        )

    async def healthz(_request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        if await asyncio.to_thread(ingestor().publisher.reachable):
            return json_response({"status": "ready", "kafka": "reachable"})
        return json_response({"status": "unavailable", "kafka": "unreachable"}, 503)

    async def metrics_endpoint(_request: Request) -> Response:
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [
        Route(path, guarded(paths[0], single(kind)), methods=["POST"])
        for kind, paths in SINGLE_ROUTES.items()
        for path in paths
    ]
    routes += [Route(path, guarded("/v1/batch", batch), methods=["POST"]) for path in BATCH_ROUTES]
    routes += read_routes(settings, lambda: get_client(settings))
    routes += [
        Route("/v1/webhook", guarded("/v1/webhook", webhook), methods=["POST"]),
        Route("/v1/projects/{write_key}/settings", guarded("/v1/projects/settings", project_settings)),
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
