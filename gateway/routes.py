"""The gateway's HTTP routes: Segment's Tracking API, the Webhooks destination, project settings."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feedhouse.gateway.ingest import Ingestor
from feedhouse.http import Handler, HttpError, guarded, json_response

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


def ingestion_routes(ingestor: Callable[[], Ingestor], default_host: str) -> list[BaseRoute]:
    """Routes of the ingestion API; ``ingestor()`` is the process's ingestor (built by the lifespan)."""

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
        host = request.headers.get("host", default_host)
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

    routes: list[BaseRoute] = [
        Route(path, guarded(paths[0], single(kind)), methods=["POST"])
        for kind, paths in SINGLE_ROUTES.items()
        for path in paths
    ]
    routes += [Route(path, guarded("/v1/batch", batch), methods=["POST"]) for path in BATCH_ROUTES]
    routes += [
        Route("/v1/webhook", guarded("/v1/webhook", webhook), methods=["POST"]),
        Route("/v1/projects/{write_key}/settings", guarded("/v1/projects/settings", project_settings)),
    ]
    return routes
