"""The admin API: computed traits, audiences and destinations. ``Authorization: Bearer <admin token>``.

=======================================  =================================================
``POST /v1/traits``, ``/v1/audiences``   create (201 with the definition); 409 if the key
                                         is taken by a trait or an audience
``GET /v1/traits``                       ``{"traits": [definition...]}`` (audiences are
                                         listed by ``GET /v1/audiences``: with the admin
                                         token it includes their definitions)
``GET /v1/{traits,audiences}/{key}``     one, with ``status`` (``backfilling`` / ``live``)
                                         and ``size`` (members, or profiles with a value)
``PUT /v1/{traits,audiences}/{key}``     replace (recomputed; changes are sent)
``DELETE /v1/{traits,audiences}/{key}``  remove (members exit); 409 for a trait audiences test
``POST /v1/destinations``                register (201); ``GET`` lists, ``GET /{key}`` shows
                                         one with its delivery state, ``DELETE /{key}`` removes
=======================================  =================================================

Bodies are JSON (at most 64 KB). A refused definition is ``400 invalid_definition`` with a
message that starts with the offending path (``when.all[1].op: unknown operator 'gte '``).
Writes go to ClickHouse (``audiences.store``); the evaluator picks them up within a second.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feedhouse.audiences.definitions import (
    AUDIENCE,
    TRAIT,
    DefinitionError,
    check_references,
    parse_definition,
)
from feedhouse.audiences.destinations import masked, parse_destination
from feedhouse.audiences.messages import iso
from feedhouse.audiences.store import (
    Definitions,
    Status,
    Store,
    StoredDefinition,
    StoredDestination,
    next_version,
    now_micros,
    stored_for,
)
from feedhouse.auth import ADMIN, Tokens
from feedhouse.gateway.body import check_content_type, parse_json, read_body
from feedhouse.http import Handler, HttpError, guarded, json_response
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
ClientFactory = Callable[[], Client]
KINDS = {"traits": TRAIT, "audiences": AUDIENCE}


def definition_views(
    store: Store, definitions: Definitions, chosen: list[StoredDefinition]
) -> list[dict[str, Any]]:
    """Definitions as the API shows them: the stored body plus identity, status and size."""
    statuses = store.statuses()
    sizes = store.sizes(s.computation_id for s in chosen)
    return [
        _view(s, definitions, statuses.get(s.computation_id), sizes.get(s.computation_id, 0)) for s in chosen
    ]


def _view(
    stored: StoredDefinition, definitions: Definitions, status: Status | None, size: int
) -> dict[str, Any]:
    live = status is not None and status.fingerprint == definitions.fingerprint(stored)
    view: dict[str, Any] = {
        **stored.definition.body,
        "kind": stored.kind,
        "computedBy": "feedhouse",
        "computationId": stored.computation_id,
        "revision": stored.revision,
        "status": "live" if live else "backfilling",
        "size": size,
        "createdAt": iso(stored.created_at),
        "updatedAt": iso(stored.updated_at),
    }
    if live and status is not None:
        view["liveAt"] = iso(status.live_at)
        view["backfillSeconds"] = round(status.backfill_seconds, 3)
    return view


def audience_definitions(client: Client) -> list[dict[str, Any]]:
    """Every Feedhouse audience with its definition, status and size (the admin listing)."""
    store = Store(client)
    definitions = store.definitions()
    return definition_views(store, definitions, definitions.of_kind(AUDIENCE))


class AdminApi:
    def __init__(self, settings: Settings, client: ClientFactory) -> None:
        self.tokens = Tokens(settings)
        self.client = client
        self.writes = threading.Lock()  # one definition write at a time in this process

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return await run_in_threadpool(function, Store(self.client()), *args)

    async def body(self, request: Request) -> Any:
        check_content_type(request)
        return parse_json(await read_body(request, MAX_BODY_BYTES))

    # ---- definitions ----------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        kind = KINDS[request.url.path.rstrip("/").rsplit("/", 1)[-1]]
        body = await self.body(request)
        return json_response(await self.run(self._create, kind, body), 201)

    def _create(self, store: Store, kind: str, body: Any) -> dict[str, Any]:
        with self.writes:
            definitions = store.definitions()
            definition = _parse(kind, body, definitions)
            taken = definitions.by_key.get(definition.key)
            if taken is not None:
                raise HttpError(409, "already_exists", f"key: {definition.key!r} is already a {taken.kind}")
            stored = stored_for(definition)
            # A deleted key is reused by a new definition (new computation id), written past
            # the deleted row's version.
            previous = store.definitions(include_deleted=True).by_key.get(definition.key)
            if previous is not None:
                stored = replace(stored, version=next_version(previous.version))
            store.save_definition(stored)
            definitions.by_key[stored.key] = stored
            log.info("definition created", extra={"definition": stored.key, "kind": kind})
            return definition_views(store, definitions, [stored])[0]

    async def list(self, request: Request) -> Response:
        kind = KINDS[request.url.path.rstrip("/").rsplit("/", 1)[-1]]

        def listing(store: Store) -> list[dict[str, Any]]:
            definitions = store.definitions()
            return definition_views(store, definitions, definitions.of_kind(kind))

        return json_response({request.url.path.rstrip("/").rsplit("/", 1)[-1]: await self.run(listing)})

    async def show(self, request: Request) -> Response:
        kind, key = _kind_and_key(request)

        def one(store: Store) -> dict[str, Any]:
            definitions = store.definitions()
            return definition_views(store, definitions, [_existing(definitions, kind, key)])[0]

        return json_response(await self.run(one))

    async def replace(self, request: Request) -> Response:
        kind, key = _kind_and_key(request)
        body = await self.body(request)

        def put(store: Store) -> dict[str, Any]:
            with self.writes:
                definitions = store.definitions()
                previous = _existing(definitions, kind, key)
                definition = _parse(kind, body, definitions, key=key)
                # Audiences testing a changed trait get a new fingerprint: recomputed too.
                stored = stored_for(definition, previous)
                store.save_definition(stored)
                definitions.by_key[key] = stored
                log.info("definition replaced", extra={"definition": key, "revision": stored.revision})
                return definition_views(store, definitions, [stored])[0]

        return json_response(await self.run(put))

    async def delete(self, request: Request) -> Response:
        kind, key = _kind_and_key(request)

        def remove(store: Store) -> dict[str, Any]:
            with self.writes:
                definitions = store.definitions()
                stored = _existing(definitions, kind, key)
                users = definitions.dependents(key)
                if users:
                    raise HttpError(
                        409, "in_use", f"{key!r} is tested by audiences {users}; change or delete them first"
                    )
                gone = replace(stored, updated_at=now_micros(), version=next_version(stored.version))
                store.save_definition(gone, deleted=True)
                log.info("definition deleted", extra={"definition": key})
                return {"success": True, "key": key, "computationId": stored.computation_id}

        return json_response(await self.run(remove))

    # ---- destinations ---------------------------------------------------------------------

    async def create_destination(self, request: Request) -> Response:
        body = await self.body(request)

        def create(store: Store) -> dict[str, Any]:
            try:
                spec = parse_destination(body)
            except DefinitionError as exc:
                raise HttpError(400, "invalid_destination", str(exc)) from None
            with self.writes:
                known = store.destinations(include_deleted=True)
                previous = known.get(spec.key)
                if previous is not None and not previous.deleted:
                    raise HttpError(409, "already_exists", f"key: destination {spec.key!r} already exists")
                now = now_micros()
                destination = StoredDestination(
                    spec.key,
                    f"dst_{secrets.token_hex(12)}",
                    spec.type,
                    spec.config,
                    spec.only,
                    False,
                    now,
                    next_version(previous.version) if previous else now,
                )
                store.save_destination(destination)
                log.info("destination created", extra={"destination": spec.key, "type": spec.type})
                return _destination_view(destination, store)

        return json_response(await self.run(create), 201)

    async def list_destinations(self, _request: Request) -> Response:
        def listing(store: Store) -> list[dict[str, Any]]:
            return [_destination_view(d, store) for d in store.destinations().values()]

        return json_response({"destinations": await self.run(listing)})

    async def show_destination(self, request: Request) -> Response:
        key = request.path_params["key"]
        return json_response(await self.run(lambda store: _destination_view(_destination(store, key), store)))

    async def delete_destination(self, request: Request) -> Response:
        key = request.path_params["key"]

        def remove(store: Store) -> dict[str, Any]:
            with self.writes:
                found = _destination(store, key)
                store.save_destination(replace(found, deleted=True, version=next_version(found.version)))
                return {"success": True, "key": key}

        return json_response(await self.run(remove))


def _parse(kind: str, body: Any, definitions: Definitions, key: str | None = None) -> Any:
    try:
        definition = parse_definition(
            kind,
            body,
            computed_traits=definitions.keys(TRAIT) - ({key} if kind == TRAIT and key else set()),
            audiences=definitions.keys(AUDIENCE),
            key=key,
        )
        check_references(definition, definitions.known)
        return definition
    except DefinitionError as exc:
        raise HttpError(400, "invalid_definition", str(exc)) from None


def _kind_and_key(request: Request) -> tuple[str, str]:
    collection = request.url.path.split("/")[2]
    return KINDS[collection], request.path_params["key"]


def _existing(definitions: Definitions, kind: str, key: str) -> StoredDefinition:
    stored = definitions.by_key.get(key)
    if stored is None or stored.kind != kind:
        raise HttpError(404, "not_found", f"{kind} {key!r} not found")
    return stored


def _destination(store: Store, key: str) -> StoredDestination:
    found = store.destinations().get(key)
    if found is None:
        raise HttpError(404, "not_found", f"destination {key!r} not found")
    return found


def _destination_view(destination: StoredDestination, store: Store) -> dict[str, Any]:
    cursor = store.cursor(destination.destination_id)
    head = store.head()
    delivery: dict[str, Any] = {
        "initialSync": "done" if cursor and cursor.initial_done else "pending",
        "cursor": cursor.seq if cursor else 0,
        "lag": max(0, head - cursor.seq) if cursor and cursor.initial_done else None,
        "delivered": cursor.delivered if cursor else 0,
        "deadLettered": cursor.dead_lettered if cursor else 0,
        "updatedAt": iso(cursor.updated_at) if cursor else None,
    }
    return {
        "key": destination.key,
        "type": destination.type,
        **masked(destination.config),
        "only": list(destination.only),
        "destinationId": destination.destination_id,
        "createdAt": iso(destination.created_at),
        "delivery": delivery,
    }


def _guarded(api: AdminApi, route: str, handler: Handler) -> Handler:
    """Admin token first; ClickHouse failures become 503; then the shared error mapping."""

    async def checked(request: Request) -> Response:
        api.tokens.require(request, ADMIN)
        try:
            return await handler(request)
        except (ClickHouseError, OSError) as exc:
            log.warning("admin API query failed", extra={"route": route, "error": str(exc)})
            raise HttpError(
                503, "unavailable", "ClickHouse did not answer; retry later", {"Retry-After": "1"}
            ) from None

    return guarded(route, checked)


def admin_routes(settings: Settings, client: ClientFactory) -> list[BaseRoute]:
    """The admin API's routes (``GET /v1/audiences`` is the read API's, see the module docstring)."""
    api = AdminApi(settings, client)
    table: list[tuple[str, str, Handler]] = [
        ("/v1/traits", "POST", api.create),
        ("/v1/traits", "GET", api.list),
        ("/v1/audiences", "POST", api.create),
        ("/v1/traits/{key}", "GET", api.show),
        ("/v1/traits/{key}", "PUT", api.replace),
        ("/v1/traits/{key}", "DELETE", api.delete),
        ("/v1/audiences/{key}", "GET", api.show),
        ("/v1/audiences/{key}", "PUT", api.replace),
        ("/v1/audiences/{key}", "DELETE", api.delete),
        ("/v1/destinations", "POST", api.create_destination),
        ("/v1/destinations", "GET", api.list_destinations),
        ("/v1/destinations/{key}", "GET", api.show_destination),
        ("/v1/destinations/{key}", "DELETE", api.delete_destination),
    ]
    return [
        Route(path, _guarded(api, f"{method} {path}", handler), methods=[method])
        for path, method, handler in table
    ]
