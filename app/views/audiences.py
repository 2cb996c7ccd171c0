"""Audiences of both systems and computed traits.

``/audiences`` lists Feedhouse's own audiences (definition in words, status, size), Engage's
(identify calls with ``context.personas``), each labelled by the system computing it, and
Feedhouse's computed traits (formula, status, profiles with a value). ``/audiences/{key}``
shows one audience: for Feedhouse's, its definition (in words and as JSON) and status; for
both, size over time with entries and exits per day, and the members (keyset pages).

A key both systems have resolves to Feedhouse's audience, and ``?computedBy=engage`` opens
Engage's: the rule of the read API's ``/v1/audiences/{key}/members``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.charts import bar_chart, day_label, day_range
from feedhouse.app.describe import describe
from feedhouse.app.session import Session
from feedhouse.app.templates import urlpart
from feedhouse.app.views.common import AppContext, wants_json
from feedhouse.app.views.groups import members_of
from feedhouse.audiences.admin import definition_views
from feedhouse.audiences.definitions import AUDIENCE, TRAIT
from feedhouse.audiences.store import Store
from feedhouse.http import HttpError
from feedhouse.read.params import PROFILE_CURSOR, Params, checked_text, encode_cursor, invalid
from feedhouse.read.queries import audience_history, audiences
from feedhouse.read.queries.audience_history import ENGAGE, FEEDHOUSE, SYSTEMS

PAGE = 50
CHART_DAYS = 90
CHANGE_DAYS = 30  # days with entries or exits listed under the chart, newest first
SUMMARY_CHARS = 160  # a definition in words, in the list (its page shows all of it)
BODY_FIELDS = ("key", "name", "description", "when")


def feedhouse_definitions(client: Client) -> list[dict[str, Any]]:
    """Every current Feedhouse audience and computed trait as the admin API shows it (status,
    size), with the definition in words (``summary``)."""
    store = Store(client)
    definitions = store.definitions()
    chosen = definitions.of_kind(AUDIENCE) + definitions.of_kind(TRAIT)
    return [{**view, "summary": describe(view)} for view in definition_views(store, definitions, chosen)]


def _listing(ctx: AppContext) -> dict[str, Any]:
    # Independent questions: side by side on lanes when the app has them.
    ours, engage = ctx.side_by_side((feedhouse_definitions, ()), (audiences.audience_sizes, ()))
    ours_keys = {view["key"] for view in ours if view["kind"] == AUDIENCE}
    listed = [view for view in ours if view["kind"] == AUDIENCE] + [
        {"key": key, "size": size, "computedBy": ENGAGE, "shadowed": key in ours_keys} for key, size in engage
    ]
    # By key, Feedhouse's first: an audience of both systems shows as two adjacent rows.
    listed.sort(key=lambda entry: (entry["key"], entry["computedBy"] != FEEDHOUSE))
    return {"audiences": listed, "traits": [view for view in ours if view["kind"] == TRAIT]}


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """A listed entry as JSON (without the page-only ``shadowed`` flag)."""
    return {name: value for name, value in entry.items() if name != "shadowed"}


async def audiences_page(ctx: AppContext, request: Request, session: Session) -> Response:
    Params(request.query_params, ("format",))
    found = await run_in_threadpool(_listing, ctx)
    if wants_json(request):
        return ctx.data({"audiences": [_public(e) for e in found["audiences"]], "traits": found["traits"]})
    return ctx.render(request, "audiences.html", {**found, "summary_chars": SUMMARY_CHARS}, session)


def _audience(client: Client, key: str, wanted: str, after: str, limit: int) -> dict[str, Any]:
    """One audience of the system ``wanted`` ('' = Feedhouse's if there is one, else Engage's)."""
    definition: dict[str, Any] | None = None
    found = None
    system = ENGAGE
    if wanted in ("", FEEDHOUSE):
        store = Store(client)
        definitions = store.definitions()
        stored = definitions.by_key.get(key)
        if stored is not None and stored.kind == AUDIENCE:
            found = audiences.computed_audience_members(client, key, after, limit + 1)
            if found is not None:  # None: deleted between the two reads
                system = FEEDHOUSE
                view = definition_views(store, definitions, [stored])[0]
                definition = {**view, "summary": describe(view)}
    if found is None and wanted in ("", ENGAGE):
        found = audiences.audience_members(client, key, after, limit + 1)
    if found is None:
        where = {"": "", FEEDHOUSE: " computed by Feedhouse", ENGAGE: " computed by Engage"}[wanted]
        raise HttpError(404, "not_found", f"no audience{where} has the key {key!r}")
    # The other system's audience of the same key, to link to it.
    if system == FEEDHOUSE:
        other = audiences.audience_members(client, key, "", 0) is not None
    else:
        other = audiences.computed_audience_members(client, key, "", 0) is not None
    size, members = found
    changes = audience_history.day_changes(client, key, system)
    # The chart ends today (or on a change dated later, from a clock ahead of ours).
    first, last = day_range(max([int(time.time()), *(day for day, _, _ in changes[-1:])]), CHART_DAYS)
    return {
        "computed_by": system,
        "definition": definition,
        "other_system": other,
        "size": size,
        "members": members_of(client, members[:limit]),
        "more": len(members) > limit,
        "history": audience_history.daily_history(changes, first, last),
    }


def audience_url(key: str, computed_by: str | None = None, **params: str) -> str:
    """The page of an audience; ``computed_by`` when the other system would win the key."""
    query = {**({"computedBy": computed_by} if computed_by else {}), **params}
    return f"/audiences/{urlpart(key)}" + (f"?{urlencode(query)}" if query else "")


async def audience_page(ctx: AppContext, request: Request, session: Session) -> Response:
    key = checked_text(request.path_params["key"], "key")
    params = Params(request.query_params, ("cursor", "format", "computedBy"))
    wanted = params.text("computedBy")
    if wanted not in ("", *SYSTEMS):
        raise invalid("computedBy", "must be engage or feedhouse")
    cursor = params.cursor(PROFILE_CURSOR)
    found = await ctx.run(_audience, key, wanted, cursor[0] if cursor else "", PAGE)
    members = found["members"]
    system = found["computed_by"]
    next_cursor = encode_cursor(PROFILE_CURSOR, members[-1].id) if found["more"] else None
    history = found["history"]
    if wants_json(request):
        body = {
            "key": key,
            "computedBy": system,
            "definition": found["definition"],
            "size": found["size"],
            "history": [
                {"day": day, "size": size, "entered": entered, "exited": exited}
                for day, size, entered, exited in history
            ],
            "members": [member.json() for member in members],
            "next": next_cursor,
        }
        return ctx.data(body)
    # Keep the system in links only when it was asked for (plain keys stay plain URLs).
    pinned = wanted or None
    next_url = audience_url(key, pinned, cursor=next_cursor) if next_cursor else None
    other_url = None
    if found["other_system"]:
        # Feedhouse's audience wins the plain URL; Engage's needs the parameter.
        other_url = audience_url(key, ENGAGE) if system == FEEDHOUSE else audience_url(key)
    changed_days = [
        (day_label(day), entered, exited, size) for day, size, entered, exited in history if entered or exited
    ][::-1][:CHANGE_DAYS]
    definition = found["definition"]
    context = {
        "key": key,
        "title": definition["name"] if definition else key,
        # The definition as it was written (the stored body), without the status around it.
        "definition_body": {k: definition[k] for k in BODY_FIELDS if k in definition} if definition else None,
        **found,
        "chart": bar_chart([(day, size) for day, size, _, _ in history], "members"),
        "changed_days": changed_days,
        "next_url": next_url,
        "other_url": other_url,
    }
    return ctx.render(request, "audience.html", context, session)
