"""The status page (``/status``): what ``feedhouse status`` and ``GET /v1/status`` show, for a
session signed in with the admin token (a read-token session gets a 403 saying so).

Each component up or down with its detail (and, for the processes ``feedhouse dev``
supervises, pid, uptime, restarts, last error), lag per consumer group and topic, what is
stored, disk used. The report is :func:`feedhouse.status.status`'s, computed per request (it
asks Kafka for offsets: a few hundred milliseconds), so the page is never staler than a reload.
"""

from __future__ import annotations

from typing import Any

from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.session import Session
from feedhouse.app.views.common import AppContext, wants_json
from feedhouse.auth import ADMIN
from feedhouse.http import HttpError
from feedhouse.read.params import Params
from feedhouse.status import status

# What a supervised process adds to its component, shown in this order.
PROCESS_FIELDS = (("pid", "pid"), ("uptime_s", "up (s)"), ("restarts", "restarts"))


def _report(client: Client, ctx: AppContext) -> dict[str, Any]:
    processes = ctx.processes() if ctx.processes is not None else None
    return status(ctx.settings, ctx.health, client, processes)


def _components(report: dict[str, Any]) -> list[dict[str, Any]]:
    shown = []
    for name, info in sorted(report.get("components", {}).items()):
        facts = [(label, info[field]) for field, label in PROCESS_FIELDS if info.get(field) is not None]
        shown.append(
            {
                "name": name,
                # A process the supervisor reports but no check covers has no "ok": down, as
                # feedhouse.status counts it for "ready".
                "ok": bool(info.get("ok", False)),
                "detail": str(info.get("detail", "")),
                "facts": facts,
                "last_error": str(info.get("last_error") or ""),
            }
        )
    return shown


def _lag(report: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(the error when lag could not be read at all, one row per consumer group)."""
    lag = report.get("lag", {})
    if isinstance(lag.get("error"), str):
        return lag["error"], []
    groups = []
    for group, info in lag.items():
        groups.append(
            {
                "group": group,
                "meaning": str(info.get("meaning", "")),
                "topics": sorted(info.get("lag", {}).items()),
                "total": info.get("total"),
                "error": str(info.get("error", "")),
            }
        )
    return "", groups


async def status_page(ctx: AppContext, request: Request, session: Session) -> Response:
    Params(request.query_params, ("format",))
    if session.scope != ADMIN:
        raise HttpError(
            403,
            "forbidden",
            "The status page needs the admin token: sign out, then sign in with FEEDHOUSE_ADMIN_TOKEN.",
        )
    report = await ctx.run(_report, ctx)
    if wants_json(request):
        return ctx.data(report)
    lag_error, lag_groups = _lag(report)
    stored = report.get("stored", {})
    context = {
        "report": report,
        "components": _components(report),
        "lag_error": lag_error,
        "lag_groups": lag_groups,
        "stored_error": str(stored.get("error", "")),
        "stored": stored,
        "disk": sorted(report.get("disk", {}).items()),
    }
    return ctx.render(request, "status.html", context, session)
