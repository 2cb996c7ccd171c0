"""People (``/people``, also ``/``): everyone, most recently seen first; search and filters.

The search box takes an email, a name, any id (opens that person) or ``trait=value``
(``plan=pro``); ``group`` and ``audience`` filter; ``trait.<name>=<value>`` parameters add trait
filters as in the read API. Unfiltered, the list walks ``person_recency`` (fast at any depth).
Filtered, selective filters (at most :data:`SELECTIVE` lookup rows, e.g. an email) verify every
candidate and rank the matches by last seen; common ones (``plan=pro``) walk people by last
seen and keep the matches, so neither ever counts a million profiles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from feedhouse.app.security import harden
from feedhouse.app.session import Session
from feedhouse.app.templates import urlpart
from feedhouse.app.views.common import AppContext, filled, query_without, wants_json
from feedhouse.read import matching
from feedhouse.read.matching import SELECTIVE
from feedhouse.read.model import iso, merge_states
from feedhouse.read.params import RECENCY_CURSOR, Params, encode_cursor
from feedhouse.read.queries import people, profiles, search

PARAMS = ("q", "group", "audience", "cursor", "limit", "format")


@dataclass(frozen=True, slots=True)
class Person:
    """A row of a people list."""

    id: str
    traits: dict[str, Any]
    group_id: str | None
    last_seen: int | None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "traits": self.traits,
            "groupId": self.group_id,
            "lastSeen": iso(self.last_seen),
        }


def rows_for(client: Client, found: Sequence[people.RecentProfile]) -> list[Person]:
    """Each listed profile with its merged traits and group (one query for the whole page)."""
    owner = {identifier: p.profile_id for p in found for identifier in p.ids}
    states = defaultdict(list)
    for state in profiles.id_states(client, sorted(owner)):
        states[owner[state.id]].append(state)
    result = []
    for p in found:
        merged = merge_states(states[p.profile_id])
        result.append(Person(p.profile_id, merged.traits, merged.group_id, p.last_seen or None))
    return result


def search_terms(q: str, traits: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The trait filters the search box adds: ``name=value``, an email, else a name."""
    if "=" in q:
        name, _, value = q.partition("=")
        if name.strip() and value.strip():
            return [*traits, (name.strip(), value.strip())]
    return [*traits, ("email" if "@" in q else "name", q)]


def find(
    client: Client, query: search.ProfileQuery, before: people.Position | None, limit: int
) -> tuple[list[Person], people.Position | None, int | None]:
    """A page of people (newest activity first), the next cursor, and the total when known."""
    if not query:
        found, after = people.recent_profiles(client, before, limit)
        return rows_for(client, found), after, None
    selected = matching.selective_matches(client, query, SELECTIVE)
    if selected is not None:
        ranked = [m for m in selected if before is None or m.position < before]
        page = ranked[:limit]
        after = page[-1].position if len(ranked) > limit else None
        shown = [
            Person(m.profile_id, m.merged.traits, m.merged.group_id, m.position[0] or None) for m in page
        ]
        return shown, after, len(selected)

    found, after = people.recent_profiles(
        client, before, limit, keep=lambda members: set(matching.passing(client, query, members))
    )
    return rows_for(client, found), after, None


def opened(ctx: AppContext, request: Request, identifier: str) -> Response:
    """Any id typed in the search box opens its person: agents paste whatever id the ticket has."""
    target = f"/people/{urlpart(identifier)}"
    if wants_json(request):
        return ctx.data({"redirect": target})
    return harden(RedirectResponse(target, 303))


async def people_page(ctx: AppContext, request: Request, session: Session) -> Response:
    params = Params(filled(request), PARAMS, ("trait.",))
    q = params.text("q").strip()
    traits = list(params.traits())
    limit = params.limit(50, 200)
    cursor = params.cursor(RECENCY_CURSOR)
    if q and "=" not in q and "@" not in q and await ctx.run(profiles.is_known, q):
        return opened(ctx, request, q)
    if q:
        traits = search_terms(q, traits)
    query = search.ProfileQuery(tuple(traits), params.text("group"), params.text("audience"))
    before = (int(cursor[0]), str(cursor[1])) if cursor else None
    found, after, total = await ctx.run(find, query, before, limit)
    if q and "@" in q and "=" not in q and not found and await ctx.run(profiles.is_known, q):
        # Not an email of anyone, but an id (userIds are often emails): open that person.
        return opened(ctx, request, q)
    next_cursor = encode_cursor(RECENCY_CURSOR, *after) if after else None
    if wants_json(request):
        return ctx.data({"profiles": [p.json() for p in found], "total": total, "next": next_cursor})
    next_url = None
    if next_cursor:
        next_url = "/people?" + urlencode(
            {**query_without(request, "cursor", "format"), "cursor": next_cursor}
        )
    context = {
        "people": found,
        "total": total,
        "q": q,
        "group": query.group,
        "audience": query.audience,
        "filtered": bool(query),
        "next_url": next_url,
        "first_page": cursor is None,
        "first_url": "/people?" + urlencode(query_without(request, "cursor", "format")),
    }
    return ctx.render(request, "people.html", context, session)
