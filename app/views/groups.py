"""A group (``/groups/{id}``): its traits and its members (profiles whose latest group call named it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.session import Session
from feedhouse.app.templates import urlpart
from feedhouse.app.views.common import AppContext, wants_json
from feedhouse.app.views.people import Person
from feedhouse.http import HttpError
from feedhouse.read.model import json_value, summary_json
from feedhouse.read.params import PROFILE_CURSOR, Params, checked_text, encode_cursor
from feedhouse.read.queries import groups, search

PAGE = 50


def members_of(client: Client, profile_ids: list[str]) -> list[Person]:
    rows = search.profile_summaries(client, profile_ids)
    people = []
    for profile in profile_ids:
        summary = summary_json(profile, rows.states[profile], rows.last_seen.get(profile))
        people.append(Person(profile, summary["traits"], summary["groupId"], rows.last_seen.get(profile)))
    return people


def _group(client: Client, group_id: str, after: str, limit: int) -> dict[str, Any]:
    traits = groups.group_traits(client, group_id)
    if traits is None:
        raise HttpError(404, "not_found", f"no group has the id {group_id!r}")
    count, members = search.matching_profiles(client, search.ProfileQuery(group=group_id), after, limit + 1)
    parsed = json_value(traits)
    return {
        "traits": parsed if isinstance(parsed, dict) else {},
        "count": count,
        "members": members_of(client, members[:limit]),
        "more": len(members) > limit,
    }


async def group_page(ctx: AppContext, request: Request, session: Session) -> Response:
    group_id = checked_text(request.path_params["group_id"], "groupId")
    params = Params(request.query_params, ("cursor", "format"))
    cursor = params.cursor(PROFILE_CURSOR)
    found = await ctx.run(_group, group_id, cursor[0] if cursor else "", PAGE)
    members: list[Person] = found["members"]
    next_cursor = encode_cursor(PROFILE_CURSOR, members[-1].id) if found["more"] else None
    if wants_json(request):
        body = {
            "id": group_id,
            "traits": found["traits"],
            "memberCount": found["count"],
            "members": [member.json() for member in members],
            "next": next_cursor,
        }
        return ctx.data(body)
    next_url = f"/groups/{urlpart(group_id)}?{urlencode({'cursor': next_cursor})}" if next_cursor else None
    context = {"group_id": group_id, **found, "next_url": next_url}
    return ctx.render(request, "group.html", context, session)
