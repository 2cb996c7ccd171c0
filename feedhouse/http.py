"""HTTP errors and JSON answers shared by every route.

Errors are ``{"success": false, "code", "message"}``, the shape Segment's SDKs read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from feedhouse import metrics

Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    """A request the gateway refuses as a whole, with the HTTP status to answer."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return json_response(
            {"success": False, "code": self.code, "message": self.message}, self.status, self.headers
        )


def json_response(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type="application/json")


def guarded(route: str, handler: Handler) -> Handler:
    """Turn HttpError into its JSON response and count every request by route and status."""

    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except HttpError as error:
            response = error.response()
        metrics.child(metrics.REQUESTS, route, str(response.status_code)).inc()
        return response

    return endpoint
