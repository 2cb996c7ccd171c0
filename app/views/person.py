"""A person (``/people/{any id}``): header, ids, group, audiences of both systems (Engage's from
identify calls, Feedhouse's own) with entered/exited times, traits with when each was set,
Feedhouse's computed traits with when each changed, activity per day, and the timeline (every
event of every id, newest first, by keyset).

Timeline controls are a GET form (works without script): ``hidden`` (Show hidden events: page
events), ``type``, ``event``, ``date`` (jump: events of that UTC day and before). ``cursor``
continues a timeline; ``fragment=1`` answers only the next events (the "Older events" button
and infinite scroll append them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.charts import DAY, Chart, activity_chart
from feedhouse.app.session import Session
from feedhouse.app.templates import urlpart
from feedhouse.app.views.common import AppContext, filled, query_without, wants_fragment, wants_json
from feedhouse.http import HttpError
from feedhouse.read.model import event_json, iso, merge_states, profile_json, with_computed
from feedhouse.read.params import EVENT_CURSOR, Params, checked_text, encode_cursor
from feedhouse.read.queries import audiences, profiles, timelines
from feedhouse.read.queries.audience_history import ENGAGE

TIMELINE_PARAMS = ("cursor", "hidden", "type", "event", "date", "limit", "format", "fragment")
PAGE = 50
CHART_DAYS = 90
DAY_MICROS = DAY * 1_000_000


def event_filter(params: Params) -> timelines.EventFilter:
    """The timeline request of a page's parameters (one more than shown: is there a next page?)."""
    limit = params.limit(PAGE, 200)
    cursor = params.cursor(EVENT_CURSOR)
    before = (int(cursor[0]), str(cursor[1])) if cursor else None
    jump = params.time("date")
    if before is None and jump is not None:
        # Jump to a date: everything up to the end of that UTC day ("" sorts below every id).
        before = (jump - jump % DAY_MICROS + DAY_MICROS, "")
    return timelines.EventFilter(
        limit=limit + 1,
        before=before,
        types=params.types(),
        events=params.events(),
        hidden=params.flag("hidden"),
    )


@dataclass(frozen=True, slots=True)
class TimelinePage:
    events: list[timelines.FeedEvent]
    next_cursor: str | None


def page_of(found: list[timelines.FeedEvent], page: timelines.EventFilter) -> TimelinePage:
    shown = found[: page.limit - 1]
    more = len(found) >= page.limit
    return TimelinePage(shown, encode_cursor(EVENT_CURSOR, *shown[-1][0].position) if more else None)


def next_link(request: Request, base: str, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return f"{base}?" + urlencode(
        {**query_without(request, "cursor", "fragment", "format", "date"), "cursor": cursor}
    )


def _person(
    ctx: AppContext, identifier: str, page: timelines.EventFilter, with_profile: bool
) -> dict[str, Any]:
    client = ctx.client()
    resolution = profiles.resolve(client, identifier)
    if not with_profile:
        events = timelines.timeline(client, resolution.ids, page)
        if (
            not events
            and page.before is None
            and not (resolution.mapped or profiles.is_known(client, identifier))
        ):
            raise HttpError(404, "not_found", f"no person has the id {identifier!r}")
        return {"events": [(event, resolution.profile_id) for event in events]}
    # The profile, Feedhouse's values, the timeline and the activity chart only depend on the
    # resolved ids: side by side.
    (summary, per_day), states, computed, events = ctx.side_by_side(
        (profiles.activity_with_days, (resolution.ids, CHART_DAYS)),
        (profiles.states_and_groups, (resolution.ids,)),
        (audiences.profile_computed, (resolution.profile_id,)),
        (timelines.timeline, (resolution.ids, page)),
    )
    rows = profiles.combined(summary, states)
    if not (resolution.mapped or rows.event_count or rows.states):
        raise HttpError(404, "not_found", f"no person has the id {identifier!r}")
    # As the read API merges them (read.model): Feedhouse's values over Engage's of the same key.
    merged, _ = with_computed(merge_states(rows.states), computed)
    return {
        "profile": profile_json(resolution, rows, computed),
        "trait_times": merged.trait_times,
        "audiences": merged.audiences,
        "events": [(event, resolution.profile_id) for event in events],
        "per_day": per_day,
        "first_seen": rows.first_seen,
        "last_seen": rows.last_seen,
    }


def audience_rows(listed: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A profile's audiences (``profile_json``'s) as the page lists them: the audience's own key,
    which system computes it, and the link to its page.

    ``profile_json`` files Engage's entry under ``engage:<key>`` when Feedhouse has an audience
    of the same key; the page shows the key itself and links to Engage's audience explicitly.
    """
    shown = []
    for name, entry in listed.items():
        system = entry.get("computedBy", ENGAGE)
        key = name
        link = f"/audiences/{urlpart(name)}"
        if system == ENGAGE and name.startswith("engage:") and name.removeprefix("engage:") in listed:
            key = name.removeprefix("engage:")
            link = f"/audiences/{urlpart(key)}?computedBy=engage"
        shown.append({**entry, "key": key, "href": link, "computedBy": system})
    # By key, Feedhouse's first (as on the audiences page).
    return sorted(shown, key=lambda row: (row["key"], row["computedBy"] != "feedhouse"))


def header_of(traits: dict[str, Any]) -> dict[str, Any]:
    """What Windsor shows of a person: name (or first + last), email, phone, avatar."""

    def text(name: str) -> str:
        value = traits.get(name)
        return value if isinstance(value, str) else ""

    name = text("name") or " ".join(part for part in (text("firstName"), text("lastName")) if part)
    return {"name": name, "email": text("email"), "phone": text("phone"), "avatar": traits.get("avatar")}


async def person_page(ctx: AppContext, request: Request, session: Session) -> Response:
    identifier = checked_text(request.path_params["id"], "id")
    params = Params(filled(request), TIMELINE_PARAMS)
    page = event_filter(params)
    fragment = wants_fragment(request)
    found = await run_in_threadpool(_person, ctx, identifier, page, not fragment)
    timeline = page_of(found["events"], page)
    base = f"/people/{urlpart(identifier)}"
    more = next_link(request, base, timeline.next_cursor)
    if fragment:
        rows = {"events": timeline.events, "next_url": more, "with_profile": False}
        return ctx.render(request, "_events.html", rows, session)
    if wants_json(request):
        body = {
            **found["profile"],
            "traitTimes": {key: iso(micros) for key, micros in found["trait_times"].items()},
            "timeline": {"events": [event_json(e) for e, _ in timeline.events], "next": timeline.next_cursor},
        }
        return ctx.data(body)
    chart: Chart | None = None
    if found["last_seen"] is not None:
        chart = activity_chart(found["per_day"], found["last_seen"] // 1_000_000, CHART_DAYS)
    context: dict[str, Any] = {
        "identifier": identifier,
        "profile": found["profile"],
        "header": header_of(found["profile"]["traits"]),
        "trait_times": found["trait_times"],
        "audience_rows": audience_rows(found["profile"]["audiences"]),
        "profile_first": found["first_seen"],
        "profile_last": found["last_seen"],
        "chart": chart,
        "events": timeline.events,
        "next_url": more,
        "with_profile": False,
        "filters": {
            "hidden": page.hidden,
            "type": ",".join(page.types),
            "event": page.events[0] if page.events else "",
            "date": params.single("date") or "",
        },
        "base": base,
        "event_types": ("track", "page", "screen", "identify", "group", "alias"),
    }
    return ctx.render(request, "person.html", context, session)
