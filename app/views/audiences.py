"""Audiences (``/audiences``: each with its size; ``/audiences/{key}``: size over time, members)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.charts import bar_chart, day_range
from feedhouse.app.session import Session
from feedhouse.app.templates import urlpart
from feedhouse.app.views.common import AppContext, wants_json
from feedhouse.app.views.groups import members_of
from feedhouse.http import HttpError
from feedhouse.read.params import PROFILE_CURSOR, Params, checked_text, encode_cursor
from feedhouse.read.queries import audience_history, audiences

PAGE = 50
CHART_DAYS = 90


async def audiences_page(ctx: AppContext, request: Request, session: Session) -> Response:
    Params(request.query_params, ("format",))
    sizes = await ctx.run(audiences.audience_sizes)
    if wants_json(request):
        return ctx.data({"audiences": [{"key": key, "size": size} for key, size in sizes]})
    return ctx.render(request, "audiences.html", {"audiences": sizes}, session)


def _audience(client: Client, key: str, after: str, limit: int) -> dict[str, Any]:
    found = audiences.audience_members(client, key, after, limit + 1)
    if found is None:
        raise HttpError(404, "not_found", f"no audience has the key {key!r}")
    size, members = found
    changes = audience_history.size_changes(client, key)
    # The chart ends today (or on a change dated later, from a client clock ahead of ours).
    first, last = day_range(max([int(time.time()), *(day for day, _ in changes[-1:])]), CHART_DAYS)
    return {
        "size": size,
        "members": members_of(client, members[:limit]),
        "more": len(members) > limit,
        "history": audience_history.daily_sizes(changes, first, last),
    }


async def audience_page(ctx: AppContext, request: Request, session: Session) -> Response:
    key = checked_text(request.path_params["key"], "key")
    params = Params(request.query_params, ("cursor", "format"))
    cursor = params.cursor(PROFILE_CURSOR)
    found = await ctx.run(_audience, key, cursor[0] if cursor else "", PAGE)
    members = found["members"]
    next_cursor = encode_cursor(PROFILE_CURSOR, members[-1].id) if found["more"] else None
    if wants_json(request):
        body = {
            "key": key,
            "size": found["size"],
            "history": [{"day": day, "size": size} for day, size in found["history"]],
            "members": [member.json() for member in members],
            "next": next_cursor,
        }
        return ctx.data(body)
    next_url = f"/audiences/{urlpart(key)}?{urlencode({'cursor': next_cursor})}" if next_cursor else None
    chart = bar_chart(found["history"], "members")
    context = {"key": key, **found, "chart": chart, "next_url": next_url}
    return ctx.render(request, "audience.html", context, session)
