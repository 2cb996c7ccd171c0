"""Segment's Profile API, served by Feedhouse: tools built on it read Feedhouse unchanged.

``GET /v1/spaces/{space_id}/collections/users/profiles/{identifier}/<route>`` with ``route``
one of ``traits``, ``external_ids``, ``events``, ``metadata``, ``links``; ``{identifier}`` is
``user_id:V``, ``anonymous_id:V`` or ``email:V``; HTTP Basic auth with the read (or admin)
token as the user name. Parameters, shapes and errors follow Segment's documentation as
written down in docs/profile-api.md, which also lists where Feedhouse differs (the events route
serves the whole history, not 14 days).

Errors are Segment's ``{"error": {"code", "message"}}``: 401 ``authentication_error``, 400
``validation_error`` (the message names the parameter), 404 ``not_found`` ("Profile was not
found."), 503 ``unavailable``.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feedhouse import metrics
from feedhouse.auth import READ, Tokens
from feedhouse.http import HttpError, json_response
from feedhouse.read import matching
from feedhouse.read.lanes import Call, Lanes
from feedhouse.read.model import classify_ids, iso, json_value, merge_states
from feedhouse.read.params import (
    EVENT_CURSOR,
    PROFILE_CURSOR,
    Params,
    checked_text,
    decode_cursor,
    encode_cursor,
    invalid,
)
from feedhouse.read.queries import identifiers, profiles, search, timelines
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

ClientFactory = Callable[[], Client]
Answer = Callable[[Request, Params, "Located", Client], dict[str, Any]]
# {identifier:path}: values may contain "/" (sent as %2F, decoded before routing).
PREFIX = "/v1/spaces/{space_id}/collections/users/profiles/{identifier:path}"
KINDS = ("user_id", "anonymous_id", "email")
# Segment's cursors carry ':'-prefixed bookkeeping parameters (":collection", ":id"); tools that
# follow them send them back, so they are accepted and ignored.
IGNORED = (":",)
TRAIT_LIMIT = (10, 200)  # (default, most) per Segment's documentation
LIST_LIMIT = (10, 100)
LINK_LIMIT = (20, 100)


class ProfileError(Exception):
    """An answer in Segment's error shape."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def response(self) -> Response:
        return json_response(
            {"error": {"code": self.code, "message": self.message}}, self.status, self.headers
        )


def profile_not_found() -> ProfileError:
    return ProfileError(404, "not_found", "Profile was not found.")


def _segment_error(error: HttpError) -> ProfileError:
    """Feedhouse's own errors (bad parameters from ``Params``) in Segment's shape."""
    if error.code == "invalid_parameter":
        name, _, problem = error.message.partition(": ")
        return ProfileError(400, "validation_error", f"The parameter `{name}` {problem}")
    code = {"unauthorized": "authentication_error"}.get(error.code, error.code)
    return ProfileError(error.status, code, error.message, error.headers)


def basic_token(request: Request) -> str | None:
    """The user name of an ``Authorization: Basic`` header (Segment: the access token, no password)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded.strip() or len(encoded) > 4096:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, _ = decoded.partition(":")
    return user or None


def parse_identifier(raw: str) -> tuple[str, str]:
    """``type:value`` -> (type, value); 400 for an unsupported type or an empty value."""
    kind, separator, value = raw.partition(":")
    if not separator or kind not in KINDS:
        raise ProfileError(
            400,
            "validation_error",
            f"The parameter `identifier` must be one of {', '.join(k + ':<value>' for k in KINDS)}",
        )
    try:
        return kind, checked_text(value, "identifier")
    except HttpError as error:
        raise _segment_error(error) from None


class Located:
    """A profile found by an identifier: its resolution, the rows it is merged from, and what a
    route's query run alongside them answered (:data:`Alongside`)."""

    def __init__(
        self, resolution: profiles.Resolution, rows: profiles.ProfileRows, alongside: Any = None
    ) -> None:
        self.resolution = resolution
        self.rows = rows
        self.merged = merge_states(rows.states)
        self.alongside = alongside


# A route's own query of the profile's ids (given a client first), run side by side with the
# profile's rows: it needs only the ids, so the route waits for the slower of the two, not both.
Alongside = Callable[[Client, Sequence[str]], Any]


def locate(
    client: Client, kind: str, value: str, lanes: Lanes, alongside: Alongside | None = None
) -> Located:
    """The profile ``kind:value`` names, or 404: the value must have been seen as that kind."""
    if kind == "email":
        found = matching.selective_matches(client, search.ProfileQuery(traits=(("email", value),)))
        if not found:  # none, or so many ids share it that it names nobody in particular
            raise profile_not_found()
        # Several profiles may share an email (Feedhouse merges by userId, not email): the most
        # recently active one answers.
        value = found[0].profile_id
    resolution = profiles.resolve(client, value)
    calls: list[Call] = [
        (profiles.activity, (resolution.ids,)),
        (profiles.states_and_groups, (resolution.ids,)),
    ]
    if alongside is not None:
        calls.append((alongside, (resolution.ids,)))
    summary, states, *extra = lanes.side_by_side(client, *calls)
    rows = profiles.combined(summary, states)
    if kind != "email":
        users, anonymous = classify_ids(resolution.ids, rows)
        if value not in (users if kind == "user_id" else anonymous):
            raise profile_not_found()
    return Located(resolution, rows, extra[0] if extra else None)


class ProfileApi:
    def __init__(self, settings: Settings, client: ClientFactory, lanes: Lanes | None = None) -> None:
        self.tokens = Tokens(settings)
        self.space_id = settings.space_id
        self.client = client
        self.lanes = lanes if lanes is not None else Lanes()

    def route(self, name: str, handler: Answer) -> Route:
        allowed = {
            "traits": ("limit", "next", "include", "class", "verbose"),
            "external_ids": ("limit", "next", "include", "verbose"),
            "events": ("limit", "next", "start", "end", "sort", "include", "exclude"),
            "metadata": ("verbose",),
            "links": ("limit", "next"),
        }[name]
        path = f"{PREFIX}/{name}"

        async def endpoint(request: Request) -> Response:
            try:
                if not self.tokens.allows(basic_token(request), READ):
                    raise ProfileError(
                        401,
                        "authentication_error",
                        "Use HTTP Basic auth with the access token as the user name.",
                        {"WWW-Authenticate": 'Basic realm="feedhouse-profiles"'},
                    )
                if request.path_params["space_id"] != self.space_id:
                    raise ProfileError(404, "not_found", "Space was not found.")
                kind, value = parse_identifier(request.path_params["identifier"])
                try:
                    params = Params(request.query_params, allowed, IGNORED)
                    body = await run_in_threadpool(self._answer, handler, request, params, kind, value)
                except HttpError as error:
                    raise _segment_error(error) from None
                except (ClickHouseError, OSError) as exc:
                    log.warning("profile API query failed", extra={"route": name, "error": str(exc)})
                    raise ProfileError(
                        503, "unavailable", "ClickHouse did not answer; retry later.", {"Retry-After": "1"}
                    ) from None
                response = json_response(body)
            except ProfileError as error:
                response = error.response()
            response.headers["Cache-Control"] = "no-store"
            metrics.child(metrics.REQUESTS, path, str(response.status_code)).inc()
            return response

        return Route(path, endpoint, methods=["GET"])

    def _answer(
        self,
        handler: Answer,
        request: Request,
        params: Params,
        kind: str,
        value: str,
    ) -> dict[str, Any]:
        client = self.client()
        alongside = ALONGSIDE[handler](params) if handler in ALONGSIDE else None
        located = locate(client, kind, value, self.lanes, alongside)
        return handler(request, params, located, client)


def _cursor(request: Request, next_value: str, limit: int | None) -> dict[str, Any]:
    url = request.url.path
    if next_value:
        url += "?" + urlencode({"next": next_value, **({"limit": limit} if limit else {})})
    body: dict[str, Any] = {"url": url, "has_more": bool(next_value), "next": next_value}
    if limit is not None:
        body["limit"] = limit
    return body


def traits(request: Request, params: Params, located: Located, _client: Client) -> dict[str, Any]:
    limit = params.limit(*TRAIT_LIMIT)
    include = params.names("include")
    selected = params.choice("class", ("audience", "computed_trait", ""), "")
    verbose = params.flag("verbose")
    start = params.single("next") or ""
    merged = located.merged
    if selected == "audience":
        # Engage audiences arrive as boolean traits named after the audience (docs/identity.md).
        values: dict[str, Any] = {key: entry["member"] for key, entry in merged.audiences.items()}
    elif selected == "computed_trait":
        values = {}  # no computed traits are kept yet; the audience engine will add them
    else:
        values = dict(merged.traits)
    if include:
        values = {key: values[key] for key in include if key in values}
    keys = [key for key in sorted(values) if key >= start]
    page, rest = keys[:limit], keys[limit:]
    times = merged.trait_times
    body: dict[str, Any] = {}
    for key in page:
        if verbose:
            body[key] = {"value": values[key], "source_id": None, "updated_at": iso(times.get(key))}
        else:
            body[key] = values[key]
    return {"traits": body, "cursor": _cursor(request, rest[0] if rest else "", limit)}


def _external_ids(located: Located, client: Client) -> list[dict[str, Any]]:
    users, anonymous = classify_ids(located.resolution.ids, located.rows)
    seen = identifiers.first_seen(client, [*users, *anonymous])
    found: list[dict[str, Any]] = []
    for kind, ids in (("user_id", users), ("anonymous_id", anonymous)):
        for identifier in ids:
            first = seen.get((kind, identifier))
            found.append(
                {
                    "id": identifier,
                    "type": kind,
                    "source_id": first.source_id if first else None,
                    "collection": "users",
                    "created_at": iso(first.time) if first else None,
                    "encoding": "none",
                    "first_message_id": first.message_id if first else None,
                }
            )
    email = located.merged.traits.get("email")
    if isinstance(email, str) and email:
        found.append(
            {
                "id": email,
                "type": "email",
                "source_id": None,
                "collection": "users",
                "created_at": iso(located.merged.trait_times.get("email")),
                "encoding": "none",
                "first_message_id": None,
            }
        )
    return sorted(found, key=lambda item: (item["type"], item["id"]))


def external_ids(request: Request, params: Params, located: Located, client: Client) -> dict[str, Any]:
    limit = params.limit(*LIST_LIMIT)
    include = set(params.names("include"))
    params.flag("verbose")  # accepted; every field is always returned
    after = _position(params)
    found = [
        item
        for item in _external_ids(located, client)
        if (not include or item["type"] in include) and (after is None or (item["type"], item["id"]) > after)
    ]
    page = found[:limit]
    more = len(found) > limit
    next_value = encode_cursor(PROFILE_CURSOR, f"{page[-1]['type']}:{page[-1]['id']}") if more else ""
    return {"data": page, "cursor": _cursor(request, next_value, limit)}


def _position(params: Params) -> tuple[str, str] | None:
    raw = params.single("next")
    if not raw:
        return None
    try:
        (position,) = decode_cursor(raw, PROFILE_CURSOR)
    except HttpError:
        raise invalid("next", "is not a cursor from this API") from None
    kind, _, identifier = str(position).partition(":")
    return kind, identifier


def event_page(params: Params) -> timelines.EventFilter:
    """The events route's page (one more than asked: whether there are more)."""
    limit = params.limit(*LIST_LIMIT)
    ascending = params.choice("sort", ("asc", "desc"), "desc") == "asc"
    start, end = params.time("start"), params.time("end")
    before = None
    raw = params.single("next")
    if raw:
        try:
            before = tuple(decode_cursor(raw, EVENT_CURSOR))
        except HttpError:
            raise invalid("next", "is not a cursor from this API") from None
    return timelines.EventFilter(
        limit=limit + 1,
        before=(int(before[0]), str(before[1])) if before else None,
        events=params.names("include"),
        exclude=params.names("exclude"),
        hidden=True,  # the Profile API returns every event
        start=start,
        end=end,
        ascending=ascending,
    )


def event_timeline(params: Params) -> Alongside:
    """The events route's timeline query, run alongside locating the profile."""
    page = event_page(params)
    return lambda client, ids: timelines.timeline(client, ids, page)


def events(request: Request, params: Params, located: Located, _client: Client) -> dict[str, Any]:
    limit = params.limit(*LIST_LIMIT)
    found: list[timelines.EventRow] = located.alongside
    shown = found[:limit]
    next_value = encode_cursor(EVENT_CURSOR, *shown[-1].position) if len(found) > limit else ""
    return {
        "data": [_event(row, located.resolution.profile_id) for row in shown],
        "cursor": _cursor(request, next_value, limit),
    }


def _event(row: timelines.EventRow, profile_id: str) -> dict[str, Any]:
    """One event in the Profile API's snake_case shape (Segment's fields, plus name and traits)."""
    external = [
        {"collection": "users", "type": kind, "id": value, "encoding": "none"}
        for kind, value in (("user_id", row.user_id), ("anonymous_id", row.anonymous_id))
        if value
    ]
    return {
        "external_ids": external,
        "context": json_value(row.context),
        "type": row.type,
        "message_id": row.message_id,
        "source_id": None,
        "timestamp": iso(row.timestamp),
        "received_at": iso(row.received_at),
        "properties": json_value(row.properties),
        "traits": json_value(row.traits),
        "event": row.event or None,
        "name": row.name or None,
        "group_id": row.group_id or None,
        "previous_id": row.previous_id or None,
        "related": {"users": profile_id},
    }


def metadata(_request: Request, params: Params, located: Located, client: Client) -> dict[str, Any]:
    params.flag("verbose")  # accepted; the metadata object is always complete
    found = identifiers.metadata(client, located.resolution.ids)
    first, last = found.first, found.last
    return {
        "metadata": {
            "created_at": iso(first.time) if first else None,
            "updated_at": iso(last.time) if last else None,
            "expires_at": None,
            "first_message_id": first.message_id if first else None,
            "first_source_id": first.source_id if first else None,
            "last_message_id": last.message_id if last else None,
            "last_source_id": last.source_id if last else None,
        }
    }


def links(request: Request, params: Params, located: Located, _client: Client) -> dict[str, Any]:
    limit = params.limit(*LINK_LIMIT)
    if params.single("next"):
        return {"data": [], "cursor": _cursor(request, "", limit)}  # one group per user: one page
    group = located.merged.group_id
    states = {state.id: state for state in located.rows.states}
    joined = max(
        (state.group_time or 0 for state in states.values() if state.group_id == group), default=None
    )
    data = []
    if group:
        data.append(
            {
                "to_collection": "accounts",
                "external_ids": [
                    {
                        "id": group,
                        "type": "group_id",
                        "source_id": None,
                        "collection": "accounts",
                        "created_at": iso(joined) if joined else None,
                        "encoding": "none",
                    }
                ],
            }
        )
    return {"data": data[:limit]}


ROUTES: dict[str, Answer] = {
    "traits": traits,
    "external_ids": external_ids,
    "events": events,
    "metadata": metadata,
    "links": links,
}


# Routes whose own query runs side by side with locating the profile.
ALONGSIDE: dict[Answer, Callable[[Params], Alongside]] = {events: event_timeline}


def profile_api_routes(
    settings: Settings, client: ClientFactory, lanes: Lanes | None = None
) -> list[BaseRoute]:
    """The Profile API's routes; ``client()`` gives the ClickHouse client to use, ``lanes`` the
    clients a profile's independent queries run on side by side."""
    api = ProfileApi(settings, client, lanes)
    return [api.route(name, handler) for name, handler in ROUTES.items()]
