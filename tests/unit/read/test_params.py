"""Read-API parameters and cursors, and that refusals happen before any query (no ClickHouse)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.testclient import TestClient

from feedhouse import settings as settings_module
from feedhouse.clickhouse.tables import MAX_MICROS, MIN_MICROS
from feedhouse.http import HttpError
from feedhouse.read.api import read_routes
from feedhouse.read.params import EVENT_CURSOR, PROFILE_CURSOR, Params, decode_cursor, encode_cursor

TOKEN = "unit-read-token"


def refusal(error: pytest.ExceptionInfo[HttpError]) -> tuple[int, str, str]:
    return error.value.status, error.value.code, error.value.message.split(":")[0]


@given(st.integers(MIN_MICROS, MAX_MICROS), st.text(min_size=1, max_size=100))
def test_event_cursors_round_trip(timestamp: int, message_id: str) -> None:
    cursor = encode_cursor(EVENT_CURSOR, timestamp, message_id)
    assert cursor.isascii() and "=" not in cursor
    assert decode_cursor(cursor, EVENT_CURSOR) == [timestamp, message_id]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "%%%",
        "a" * 5000,
        encode_cursor(PROFILE_CURSOR, "x"),
        encode_cursor(EVENT_CURSOR, MAX_MICROS + 1, "m"),
        encode_cursor(EVENT_CURSOR, "5", "m"),
        encode_cursor(EVENT_CURSOR, 5),
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(orjson.dumps({"e": 1})).decode(),
    ],
)
def test_foreign_or_tampered_event_cursors_are_refused(raw: str) -> None:
    with pytest.raises(HttpError) as error:
        decode_cursor(raw, EVENT_CURSOR)
    assert refusal(error) == (400, "invalid_parameter", "cursor")


def test_params_parse_and_refuse_by_name() -> None:
    params = Params(
        QueryParams("limit=7&type=track,page&type=identify&event=A,B&event=C&hidden=TRUE"),
        ("limit", "type", "event", "hidden"),
    )
    assert params.limit(50, 500) == 7
    assert params.types() == ("track", "page", "identify")
    assert params.events() == ("A,B", "C")
    assert params.flag("hidden") is True
    assert Params(QueryParams(""), ()).limit(50, 500) == 50
    traits = Params(QueryParams("trait.email=a%40b&trait.plan=pro"), (), ("trait.",)).traits()
    assert traits == (("email", "a@b"), ("plan", "pro"))
    for query, allowed, call, name in [
        ("bogus=1", ("limit",), lambda p: None, "bogus"),
        ("limit=1&limit=2", ("limit",), lambda p: p.limit(50, 500), "limit"),
        ("limit=1e3", ("limit",), lambda p: p.limit(50, 500), "limit"),
        ("hidden=2", ("hidden",), lambda p: p.flag("hidden"), "hidden"),
        ("type=Track", ("type",), lambda p: p.types(), "type"),
        ("trait.a=1&trait.a=2", (), lambda p: p.traits(), "trait.a"),
        ("&".join(f"trait.t{i}=v" for i in range(11)), (), lambda p: p.traits(), "trait.*"),
    ]:
        with pytest.raises(HttpError) as error:
            call(Params(QueryParams(query), allowed, ("trait.",) if "trait" in query else ()))
        assert refusal(error) == (400, "invalid_parameter", name), query


@pytest.fixture
def offline() -> Iterator[TestClient]:
    """The read routes with a ClickHouse client that must never be asked for."""

    def no_client() -> object:
        raise AssertionError("a refused request reached ClickHouse")

    settings = settings_module.load({}, read_token=TOKEN)
    app = Starlette(routes=read_routes(settings, no_client))  # type: ignore[arg-type]
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/v1/profiles/x",
        "/v1/profiles/x/timeline",
        "/v1/feed",
        "/v1/profiles",
        "/v1/groups/g",
        "/v1/audiences",
        "/v1/audiences/a/members",
    ],
)
def test_unauthorized_requests_never_query(offline: TestClient, path: str) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        response = offline.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "success": False,
            "code": "unauthorized",
            "message": "this route needs Authorization: Bearer <read token>",
        }


def test_bad_parameters_are_refused_before_any_query(offline: TestClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path, name in [
        ("/v1/feed?limit=0", "limit"),
        ("/v1/profiles/x/timeline?cursor=zz", "cursor"),
        ("/v1/profiles/" + "x" * 1025, "id"),
        ("/v1/groups/g?limit=5000", "limit"),
        ("/v1/profiles?trait.=1", "trait."),
    ]:
        response = offline.get(path, headers=headers)
        assert response.status_code == 400, path
        assert response.json()["message"].startswith(f"{name}:")
        assert response.headers["cache-control"] == "no-store"


def test_empty_or_shared_tokens_are_refused_at_start() -> None:
    for overrides in ({"read_token": ""}, {"admin_token": ""}, {"admin_token": "dev-read-token"}):
        with pytest.raises(settings_module.SettingsError, match="TOKEN"):
            settings_module.load({}, **overrides)


def test_the_admin_token_reads_and_the_read_token_does_not_administer() -> None:
    from feedhouse.auth import ADMIN, READ, Tokens

    tokens = Tokens(settings_module.load({}))
    assert tokens.allows("dev-admin-token", READ) and tokens.allows("dev-admin-token", ADMIN)
    assert tokens.allows("dev-read-token", READ) and not tokens.allows("dev-read-token", ADMIN)
    assert not tokens.allows("dev-write-key", READ) and not tokens.allows("", READ)
    app = Starlette(routes=read_routes(settings_module.load({}), lambda: None))  # type: ignore[arg-type,return-value]
    with TestClient(app) as client:
        assert client.get("/v1/feed", headers={"Authorization": "Bearer "}).status_code == 401
