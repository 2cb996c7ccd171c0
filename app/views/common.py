"""What every view shares: the signed-in check, rendering (HTML or JSON), errors, queries.

A view is ``async def view(ctx, request, session) -> Response``; :meth:`AppContext.page` wraps
it so that it only runs for a valid session (else a redirect to ``/login``), its blocking
queries run in the thread pool, :class:`feedhouse.http.HttpError` becomes an error page (or
JSON for ``?format=json``), a ClickHouse failure a 503 page, and every response carries the
security headers of :mod:`feedhouse.app.security`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from feedhouse import metrics
from feedhouse.app.security import harden
from feedhouse.app.session import Session, Sessions
from feedhouse.app.templates import build_templates
from feedhouse.health import Health
from feedhouse.http import HttpError, json_response
from feedhouse.read.lanes import Call, Lanes
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Client]
# What ``feedhouse dev``'s supervisor reports of its processes (pid, uptime, restarts, last error).
ProcessReport = Callable[[], dict[str, dict[str, Any]]]
View = Callable[["AppContext", Request, Session], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
MAX_QUERY_CHARS = 4096  # a page's whole query string


def wants_json(request: Request) -> bool:
    """``?format=json``: the page's data instead of its HTML (every page offers it)."""
    return request.query_params.get("format") == "json"


def wants_fragment(request: Request) -> bool:
    """``?fragment=1``: only the list items of a paged list (the JS appends them)."""
    return request.query_params.get("fragment") == "1"


def filled(request: Request) -> QueryParams:
    """The query parameters that have a value: a form's empty fields mean "no filter"."""
    return QueryParams([(name, value) for name, value in request.query_params.multi_items() if value.strip()])


def query_without(request: Request, *names: str) -> dict[str, str]:
    """The request's single-valued query parameters minus ``names`` (to build the next link)."""
    return {k: v for k, v in request.query_params.items() if k not in names and v.strip()}


def own_health(client: ClientFactory) -> Health:
    """Health checks for an app served without the server's (tests, an embedding): ClickHouse,
    the one part the app itself depends on, so the status page never reports "ready" for
    nothing."""

    def clickhouse() -> tuple[bool, str]:
        try:
            client().query("SELECT 1")
        except Exception as exc:  # a failing check is a down component, not a 500
            return False, f"{type(exc).__name__}: {exc}"[:300]
        return True, "answers"

    health = Health()
    health.register("clickhouse", clickhouse)
    return health


class AppContext:
    """Settings, sessions, templates and the ClickHouse client of the app's views; the process's
    health checks and supervised processes for the status page."""

    def __init__(
        self,
        settings: Settings,
        client: ClientFactory,
        lanes: Lanes | None = None,
        health: Health | None = None,
        processes: ProcessReport | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.lanes = lanes if lanes is not None else Lanes()
        self.health = health if health is not None else own_health(client)
        self.processes = processes
        self.sessions = Sessions(settings)
        self.templates = build_templates()

    def side_by_side(self, *calls: Call) -> list[Any]:
        """Blocking query functions run concurrently (:class:`feedhouse.read.lanes.Lanes`); their
        results. Called from a worker thread (inside :meth:`run`)."""
        return self.lanes.side_by_side(self.client(), *calls)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """A blocking query function in the thread pool, given the client first."""
        return await run_in_threadpool(function, self.client(), *args)

    def render(
        self,
        request: Request,
        template: str,
        context: dict[str, Any],
        session: Session | None,
        status: int = 200,
    ) -> Response:
        full = {
            "session": session,
            "csrf": session.csrf if session else "",
            "path": request.url.path,
            **context,
        }
        return harden(self.templates.TemplateResponse(request, template, full, status_code=status))

    def data(self, body: object, status: int = 200) -> Response:
        return harden(json_response(body, status))

    def page(self, name: str, view: View) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            response = await self._serve(request, view)
            metrics.child(metrics.REQUESTS, name, str(response.status_code)).inc()
            return response

        return endpoint

    async def _serve(self, request: Request, view: View) -> Response:
        session = self.sessions.read(request)
        if session is None:
            if wants_json(request) or wants_fragment(request):
                return self.data({"success": False, "code": "unauthorized", "message": "sign in first"}, 401)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return harden(RedirectResponse(f"/login?next={quote(target, safe='')}", 303))
        if len(request.url.query) > MAX_QUERY_CHARS:
            return self.error(
                request, session, HttpError(414, "uri_too_long", "the query string is too long")
            )
        try:
            return await view(self, request, session)
        except HttpError as error:
            return self.error(request, session, error)
        except (ClickHouseError, OSError) as exc:
            log.warning("app query failed", extra={"path": request.url.path, "error": str(exc)})
            return self.error(
                request,
                session,
                HttpError(503, "unavailable", "ClickHouse did not answer; retry in a moment."),
            )

    def error(self, request: Request, session: Session | None, error: HttpError) -> Response:
        if wants_json(request) or wants_fragment(request):
            return self.data({"success": False, "code": error.code, "message": error.message}, error.status)
        return self.render(request, "error.html", {"error": error}, session, error.status)
