"""The feed (``/feed``): every profile's events, newest first, each linking to its person.

Same controls as a person's timeline (hidden events, type, event name, older pages). The page
polls ``?fragment=1`` (the newest page) every few seconds and puts new events on top: plain
polling rather than server-sent events, so a gateway worker never holds a connection per open
tab and the page keeps working through proxies that buffer streams.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.session import Session
from feedhouse.app.views.common import AppContext, filled, query_without, wants_fragment, wants_json
from feedhouse.app.views.person import TIMELINE_PARAMS, event_filter, next_link, page_of
from feedhouse.read.model import event_json
from feedhouse.read.params import Params
from feedhouse.read.queries import timelines

POLL_SECONDS = 2


async def feed_page(ctx: AppContext, request: Request, session: Session) -> Response:
    params = Params(filled(request), TIMELINE_PARAMS)
    page = event_filter(params)
    timeline = page_of(await ctx.run(timelines.feed, page), page)
    more = next_link(request, "/feed", timeline.next_cursor)
    if wants_json(request):
        body = [{**event_json(event), "profileId": profile} for event, profile in timeline.events]
        return ctx.data({"events": body, "next": timeline.next_cursor})
    context: dict[str, Any] = {"events": timeline.events, "next_url": more, "with_profile": True}
    if wants_fragment(request):
        return ctx.render(request, "_events.html", context, session)
    poll = {**query_without(request, "cursor", "fragment", "format", "date"), "fragment": "1"}
    context |= {
        "live": page.before is None,
        "poll_url": "/feed?" + urlencode(poll),
        "poll_seconds": POLL_SECONDS,
        "filters": {
            "hidden": page.hidden,
            "type": ",".join(page.types),
            "event": page.events[0] if page.events else "",
            "date": params.single("date") or "",
        },
        "base": "/feed",
        "event_types": ("track", "page", "screen", "identify", "group", "alias"),
    }
    return ctx.render(request, "feed.html", context, session)
