"""The read API: profiles, timelines, the feed, people search, groups and audiences.

Every route needs ``Authorization: Bearer <FEEDHOUSE_READ_TOKEN>`` (or the admin token;
compared in constant time, ``feedhouse.auth``);
errors are ``{"success": false, "code", "message"}``: 401 ``unauthorized``, 400
``invalid_parameter`` (the message names the parameter), 404 ``not_found``, 503
``unavailable`` when ClickHouse cannot answer. Shapes (times ISO-8601 UTC, see ``feedhouse.read.model``):

``GET /v1/profiles/{id}``
    ``{"id", "ids", "userIds", "anonymousIds", "traits", "group": {"id", "traits"} | null,
    "audiences": {key: {"member", "enteredAt", "exitedAt"}}, "firstSeen", "lastSeen",
    "eventCount"}``. ``{id}`` is any id of the profile; ``id`` is its canonical id.
``GET /v1/profiles/{id}/timeline?limit=50&cursor=&hidden=false&type=&event=``
    ``{"events": [...], "next": cursor | null}``: every event of every id of the profile,
    newest first by (timestamp, messageId). ``type`` lists Segment types (comma-separated or
    repeated), ``event`` names track events (repeat for several). Page events are hidden
    unless ``hidden=true`` or ``type`` names ``page``. ``limit`` 1-500.
``GET /v1/feed`` (same parameters)
    the same across all profiles; each event also has ``profileId`` (null: no real id).
``GET /v1/profiles?trait.<name>=<value>&group=&audience=&limit=50&cursor=``
    ``{"profiles": [{"id", "traits", "groupId", "lastSeen"}], "total", "next"}``: profiles
    whose merged state matches every filter, by canonical id. Without a filter it lists every
    profile and ``total`` is null (counting them all is a full scan).
``GET /v1/groups/{groupId}?limit=100&cursor=``
    ``{"id", "traits", "members": [profile ids], "memberCount", "next"}``: members are the
    profiles whose latest group call (across their ids) named this group. 404 if never seen.
``GET /v1/audiences`` -> ``{"audiences": [{"key", "size", "computedBy", "name"?}]}``: Engage's
    audiences (``computedBy: engage``, from identify calls) and Feedhouse's own
    (``computedBy: feedhouse``; with the admin token, with their definitions and status);
``GET /v1/audiences/{key}/members?limit=100&cursor=&computedBy=`` -> ``{"members", "size",
    "next", "computedBy"}``: Feedhouse's audience of that key if there is one, else Engage's
    (``computedBy=engage|feedhouse`` chooses).

Pagination is by keyset (the cursor holds the last position returned), so pages neither
repeat nor skip while events arrive: newer events land before the first page. A redelivered
copy of an event that moves its timestamp (a resend with another clock-skew correction) moves
the event with it. Queries are blocking (chDB has no async client): handlers run them in the
thread pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feedhouse.auth import ADMIN, READ, Tokens, bearer_token
from feedhouse.http import Handler, HttpError, guarded, json_response
from feedhouse.read import matching
from feedhouse.read.lanes import Lanes
from feedhouse.read.model import event_json, json_value, merged_summary_json, profile_json, summary_json
from feedhouse.read.params import EVENT_CURSOR, PROFILE_CURSOR, Params, checked_text, encode_cursor, invalid
from feedhouse.read.profile_api import profile_api_routes
from feedhouse.read.queries import audiences, groups, profiles, search, timelines
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Client]
DefinitionsProvider = Callable[[Client], list[dict[str, Any]]]

EVENT_PARAMS = ("limit", "cursor", "hidden", "type", "event")
MAX_EVENTS = 500
MAX_PROFILES = 500
MAX_MEMBERS = 1000


def not_found(what: str) -> HttpError:
    return HttpError(404, "not_found", f"{what} not found")


class ReadApi:
    """The handlers, bound to the read token and the ClickHouse client to query."""

    def __init__(
        self,
        settings: Settings,
        client: ClientFactory,
        definitions: DefinitionsProvider | None = None,
        lanes: Lanes | None = None,
    ) -> None:
        self.tokens = Tokens(settings)
        self.client = client
        self.definitions = definitions
        self.lanes = lanes if lanes is not None else Lanes()

    def authorize(self, request: Request) -> None:
        self.tokens.require(request, READ)

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking query function in the thread pool with the current client."""
        return await run_in_threadpool(function, self.client(), *args)

    # -- profiles ---------------------------------------------------------------------------

    async def profile(self, request: Request) -> Response:
        Params(request.query_params, ())
        identifier = checked_text(request.path_params["id"], "id")
        return json_response(await self.run(_profile, identifier, self.lanes))

    async def timeline(self, request: Request) -> Response:
        params = Params(request.query_params, EVENT_PARAMS)
        identifier = checked_text(request.path_params["id"], "id")
        page = _event_filter(params)
        events = await self.run(_timeline, identifier, page)
        return _events_response([(event, None) for event in events], page, with_profile=False)

    async def search(self, request: Request) -> Response:
        params = Params(request.query_params, ("limit", "cursor", "group", "audience"), ("trait.",))
        query = search.ProfileQuery(params.traits(), params.text("group"), params.text("audience"))
        limit = params.limit(50, MAX_PROFILES)
        cursor = params.cursor(PROFILE_CURSOR)
        after = cursor[0] if cursor else ""
        total, page = await self.run(_search, query, after, limit + 1)
        return json_response(
            {
                "profiles": page[:limit],
                "total": total,
                "next": encode_cursor(PROFILE_CURSOR, page[limit - 1]["id"]) if len(page) > limit else None,
            }
        )

    # -- events -----------------------------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        page = _event_filter(Params(request.query_params, EVENT_PARAMS))
        return _events_response(await self.run(timelines.feed, page), page, with_profile=True)

    # -- groups and audiences ---------------------------------------------------------------

    async def group(self, request: Request) -> Response:
        params = Params(request.query_params, ("limit", "cursor"))
        group_id = checked_text(request.path_params["group_id"], "groupId")
        limit = params.limit(100, MAX_MEMBERS)
        cursor = params.cursor(PROFILE_CURSOR)
        body = await self.run(_group, group_id, cursor[0] if cursor else "", limit)
        return json_response(body)

    async def audiences(self, request: Request) -> Response:
        Params(request.query_params, ())
        admin = self.tokens.scope_of(bearer_token(request)) == ADMIN and self.definitions is not None
        listed: list[dict[str, Any]] = [
            {"key": key, "size": size, "computedBy": "engage"}
            for key, size in await self.run(audiences.audience_sizes)
        ]
        if admin:
            assert self.definitions is not None
            listed += await self.run(self.definitions)
        else:
            listed += [
                {"key": key, "size": size, "computedBy": "feedhouse", "name": name}
                for key, name, size in await self.run(audiences.computed_audience_sizes)
            ]
        return json_response({"audiences": listed})

    async def audience_members(self, request: Request) -> Response:
        params = Params(request.query_params, ("limit", "cursor", "computedBy"))
        key = checked_text(request.path_params["key"], "key")
        system = params.text("computedBy")
        if system not in ("", "engage", "feedhouse"):
            raise invalid("computedBy", "must be engage or feedhouse")
        limit = params.limit(100, MAX_MEMBERS)
        cursor = params.cursor(PROFILE_CURSOR)
        after = cursor[0] if cursor else ""
        found = None
        if system in ("", "feedhouse"):
            found = await self.run(audiences.computed_audience_members, key, after, limit + 1)
            system = "feedhouse" if found is not None else system
        if found is None and system in ("", "engage"):
            found = await self.run(audiences.audience_members, key, after, limit + 1)
            system = "engage"
        if found is None:
            raise not_found(f"audience {key!r}")
        size, members = found
        return json_response(
            {
                "members": members[:limit],
                "size": size,
                "next": encode_cursor(PROFILE_CURSOR, members[limit - 1]) if len(members) > limit else None,
                "computedBy": system,
            }
        )


def _event_filter(params: Params) -> timelines.EventFilter:
    limit = params.limit(50, MAX_EVENTS)
    cursor = params.cursor(EVENT_CURSOR)
    return timelines.EventFilter(
        # One more than asked: whether there is a next page, without another query.
        limit=limit + 1,
        before=(cursor[0], cursor[1]) if cursor else None,
        types=params.types(),
        events=params.events(),
        hidden=params.flag("hidden"),
    )


def _events_response(
    events: list[timelines.FeedEvent], page: timelines.EventFilter, *, with_profile: bool
) -> Response:
    limit = page.limit - 1
    shown = events[:limit]
    body = []
    for row, profile_id in shown:
        item = event_json(row)
        if with_profile:
            item["profileId"] = profile_id
        body.append(item)
    next_cursor = None
    if len(events) > limit:
        timestamp, message_id = shown[-1][0].position
        next_cursor = encode_cursor(EVENT_CURSOR, timestamp, message_id)
    return json_response({"events": body, "next": next_cursor})


# -- blocking parts, run in the thread pool -----------------------------------------------------


def _profile(client: Client, identifier: str, lanes: Lanes) -> dict[str, Any]:
    resolution = profiles.resolve(client, identifier)
    summary, states, computed = lanes.side_by_side(
        client,
        (profiles.activity, (resolution.ids,)),
        (profiles.states_and_groups, (resolution.ids,)),
        (audiences.profile_computed, (resolution.profile_id,)),
    )
    rows = profiles.combined(summary, states)
    if not (resolution.mapped or rows.event_count or rows.states):
        raise not_found(f"profile {identifier!r}")
    return profile_json(resolution, rows, computed)


def _timeline(client: Client, identifier: str, page: timelines.EventFilter) -> list[timelines.EventRow]:
    resolution = profiles.resolve(client, identifier)
    found = timelines.timeline(client, resolution.ids, page)
    # An empty first page may be an unknown id (404) or a known one without matching events.
    unknown = not resolution.mapped and not profiles.is_known(client, identifier)
    if not found and page.before is None and unknown:
        raise not_found(f"profile {identifier!r}")
    return found


def _search(
    client: Client, query: search.ProfileQuery, after: str, limit: int
) -> tuple[int | None, list[dict[str, Any]]]:
    total: int | None
    if query:
        selected = matching.selective_matches(client, query)
        if selected is not None:  # few candidates: verified here, in id order
            ordered = sorted(selected, key=lambda match: match.profile_id)
            shown = [match for match in ordered if match.profile_id > after][:limit]
            summaries = [merged_summary_json(m.profile_id, m.merged, m.position[0] or None) for m in shown]
            return len(ordered), summaries
        total, page = search.matching_profiles(client, query, after, limit)
    else:
        total, page = None, search.list_profiles(client, after, limit)
    return total, _summaries(client, page)


def _summaries(client: Client, profile_ids: list[str]) -> list[dict[str, Any]]:
    rows = search.profile_summaries(client, profile_ids)
    return [
        summary_json(profile, rows.states[profile], rows.last_seen.get(profile)) for profile in profile_ids
    ]


def _group(client: Client, group_id: str, after: str, limit: int) -> dict[str, Any]:
    traits = groups.group_traits(client, group_id)
    if traits is None:
        raise not_found(f"group {group_id!r}")
    count, members = search.matching_profiles(client, search.ProfileQuery(group=group_id), after, limit + 1)
    parsed = json_value(traits)
    return {
        "id": group_id,
        "traits": parsed if isinstance(parsed, dict) else {},
        "members": members[:limit],
        "memberCount": count,
        "next": encode_cursor(PROFILE_CURSOR, members[limit - 1]) if len(members) > limit else None,
    }


def _guarded(api: ReadApi, route: str, handler: Handler) -> Handler:
    """Authorize; ClickHouse failures become 503; then the gateway's error mapping and counting."""

    async def checked(request: Request) -> Response:
        api.authorize(request)
        try:
            return await handler(request)
        except (ClickHouseError, OSError) as exc:
            log.warning("read API query failed", extra={"route": route, "error": str(exc)})
            raise HttpError(
                503, "unavailable", "ClickHouse did not answer; retry later", {"Retry-After": "1"}
            ) from None

    counted = guarded(route, checked)

    async def endpoint(request: Request) -> Response:
        response = await counted(request)
        response.headers["Cache-Control"] = "no-store"  # profiles are personal data
        return response

    return endpoint


def read_routes(
    settings: Settings,
    client: ClientFactory,
    definitions: DefinitionsProvider | None = None,
    lanes: Lanes | None = None,
) -> list[BaseRoute]:
    """The read API's routes, for the server's app; ``client()`` gives the ClickHouse client to use,
    ``lanes`` (optional) the clients a profile's independent queries run on side by side.

    ``definitions(client)``, when given, lists Feedhouse's audiences with their definitions for
    callers with the admin token (``feedhouse.audiences.admin.audience_definitions``).
    """
    api = ReadApi(settings, client, definitions, lanes)
    table: list[tuple[str, Handler]] = [
        ("/v1/profiles", api.search),
        # {id:path}: ids may contain "/" (sent as %2F); the timeline route is tried first.
        ("/v1/profiles/{id:path}/timeline", api.timeline),
        ("/v1/profiles/{id:path}", api.profile),
        ("/v1/feed", api.feed),
        ("/v1/groups/{group_id:path}", api.group),
        ("/v1/audiences", api.audiences),
        ("/v1/audiences/{key:path}/members", api.audience_members),
    ]
    routes: list[BaseRoute] = [
        Route(path, _guarded(api, path, handler), methods=["GET"]) for path, handler in table
    ]
    # Segment's Profile API (its own auth and error shapes), for tools built on Segment.
    return routes + profile_api_routes(settings, client, lanes)
