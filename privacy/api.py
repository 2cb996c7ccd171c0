"""The Regulations API (admin token), modelled on Segment's Public API regulations.

``POST /v1/regulations`` ``{"regulationType", "subjectType", "subjectIds"}`` ->
``{"data": {"regulateId"}}``; ``GET /v1/regulations/{id}`` -> ``{"data": {"regulation":
{...}}}``; ``GET /v1/regulations`` -> ``{"data": {"regulations": [...]}}`` (newest first).
Invalid requests get 400 naming the field. Times are ISO-8601 UTC.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from feedhouse.auth import ADMIN, Tokens
from feedhouse.gateway.body import read_json_object
from feedhouse.http import HttpError, guarded, json_response
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.regulations import (
    MAX_ID_CHARS,
    MAX_SUBJECTS,
    InvalidRegulation,
    Regulation,
    parse_request,
)
from feedhouse.read.model import iso
from feedhouse.settings import Settings

MAX_BODY_BYTES = MAX_SUBJECTS * (MAX_ID_CHARS + 8) + 4096


def regulation_json(regulation: Regulation) -> dict[str, Any]:
    body = regulation.to_json()
    for name in ("createdAt", "startedAt", "finishedAt"):
        body[name] = iso(body[name])
    return body


def regulation_routes(settings: Settings, regulations: RegulationLog) -> list[BaseRoute]:
    tokens = Tokens(settings)

    async def create(request: Request) -> Response:
        tokens.require(request, ADMIN)
        body = await read_json_object(request, MAX_BODY_BYTES)
        try:
            regulation = parse_request(body, time.time_ns() // 1000)
        except InvalidRegulation as exc:
            raise HttpError(400, "invalid_regulation", str(exc)) from None
        regulations.save(regulation)
        return json_response({"data": {"regulateId": regulation.id}})

    async def listing(request: Request) -> Response:
        tokens.require(request, ADMIN)
        found = [regulation_json(r) for r in regulations.all()]
        return json_response(
            {"data": {"regulations": found, "pagination": {"current": "1", "totalEntries": len(found)}}}
        )

    async def one(request: Request) -> Response:
        tokens.require(request, ADMIN)
        regulation = regulations.get(request.path_params["regulation_id"])
        if regulation is None:
            raise HttpError(404, "not_found", "no regulation with this id")
        return json_response({"data": {"regulation": regulation_json(regulation)}})

    return [
        Route("/v1/regulations", guarded("/v1/regulations", create), methods=["POST"]),
        Route("/v1/regulations", guarded("/v1/regulations", listing), methods=["GET"]),
        Route("/v1/regulations/{regulation_id}", guarded("/v1/regulations/{id}", one), methods=["GET"]),
    ]
