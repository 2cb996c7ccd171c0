"""Segment's Profile API on real chDB: Segment's paths, auth, parameters, shapes and errors."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.conftest import ReadApi
from tests.integration.test_read_api import AUDIENCE, call, iso, journey

pytestmark = pytest.mark.integration

BASE = "/v1/spaces/default/collections/users/profiles"


def basic(token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}


def get(read_api: ReadApi, path: str, token: str | None = None, **params: Any) -> httpx.Response:
    token = read_api.settings.read_token if token is None else token
    return read_api.http.get(f"{BASE}/{path}", params=params, headers=basic(token))


def seeded(read_api: ReadApi) -> None:
    read_api.send(
        *journey(),
        call(
            "identify",
            "a1",
            90,
            userId="ada-2",
            traits={"vip_users": True},
            context={"personas": AUDIENCE},
        ),
    )


def test_traits_by_each_kind_of_identifier_with_segments_cursor(read_api: ReadApi) -> None:
    seeded(read_api)
    expected = {"email": "ada@example.com", "plan": "free", "vip_users": True}
    for identifier in ("user_id:ada-2", "user_id:ada", "anonymous_id:ada-phone", "email:ada@example.com"):
        response = get(read_api, f"{identifier}/traits")
        assert response.status_code == 200, (identifier, response.text)
        body = response.json()
        assert body["traits"] == expected, identifier
        assert body["cursor"]["has_more"] is False and body["cursor"]["next"] == "", body["cursor"]
        assert body["cursor"]["url"] == f"{BASE}/{identifier}/traits"
    assert response.headers["cache-control"] == "no-store"


def test_traits_limit_next_include_class_and_verbose(read_api: ReadApi) -> None:
    seeded(read_api)
    first = get(read_api, "user_id:ada-2/traits", limit=2).json()
    assert first["traits"] == {"email": "ada@example.com", "plan": "free"}
    assert first["cursor"]["has_more"] is True and first["cursor"]["next"] == "vip_users"
    rest = get(read_api, "user_id:ada-2/traits", limit=2, next=first["cursor"]["next"]).json()
    assert rest["traits"] == {"vip_users": True} and rest["cursor"]["has_more"] is False
    assert get(read_api, "user_id:ada-2/traits", include="plan,nope").json()["traits"] == {"plan": "free"}
    assert get(read_api, "user_id:ada-2/traits", **{"class": "audience"}).json()["traits"] == {
        "vip_users": True
    }
    assert get(read_api, "user_id:ada-2/traits", **{"class": "computed_trait"}).json()["traits"] == {}
    verbose = get(read_api, "user_id:ada-2/traits", include="email", verbose="true").json()["traits"]
    assert verbose == {"email": {"value": "ada@example.com", "source_id": None, "updated_at": iso(70)}}


def test_external_ids_list_every_id_with_when_it_was_first_seen(read_api: ReadApi) -> None:
    seeded(read_api)
    body = get(read_api, "anonymous_id:ada-laptop/external_ids", limit=100).json()
    found = {(item["type"], item["id"]): item for item in body["data"]}
    assert sorted(found) == [
        ("anonymous_id", "ada-laptop"),
        ("anonymous_id", "ada-phone"),
        ("email", "ada@example.com"),
        ("user_id", "ada"),
        ("user_id", "ada-2"),
    ]
    phone = found[("anonymous_id", "ada-phone")]
    assert (phone["created_at"], phone["first_message_id"], phone["collection"], phone["encoding"]) == (
        iso(10),
        "m1",
        "users",
        "none",
    )
    assert body["cursor"]["has_more"] is False
    only = get(read_api, "user_id:ada/external_ids", include="user_id").json()["data"]
    assert [item["id"] for item in only] == ["ada", "ada-2"]
    page = get(read_api, "user_id:ada/external_ids", limit=2).json()
    assert len(page["data"]) == 2 and page["cursor"]["has_more"] is True
    rest = get(read_api, "user_id:ada/external_ids", limit=2, next=page["cursor"]["next"]).json()["data"]
    assert [i["id"] for i in page["data"] + rest][:4] == ["ada-laptop", "ada-phone", "ada@example.com", "ada"]


@pytest.mark.parametrize("served", ["read_api", "pages"], ids=["one client", "lanes"])
def test_events_serve_the_whole_history_with_start_end_sort_and_paging(
    request: pytest.FixtureRequest, served: str
) -> None:
    # With lanes (as the server runs) the timeline runs beside locating the profile.
    read_api: ReadApi = request.getfixturevalue(served)
    seeded(read_api)
    ids = [e["message_id"] for e in get(read_api, "user_id:ada-2/events", limit=100).json()["data"]]
    assert ids == ["a1", "m8", "m7", "m6", "m5", "m4", "m3", "m2", "m1"]  # page events included
    oldest = get(read_api, "user_id:ada-2/events", sort="asc", limit=3).json()
    assert [e["message_id"] for e in oldest["data"]] == ["m1", "m2", "m3"]
    more = get(read_api, "user_id:ada-2/events", sort="asc", limit=3, next=oldest["cursor"]["next"]).json()
    assert [e["message_id"] for e in more["data"]] == ["m4", "m5", "m6"]
    window = get(read_api, "user_id:ada-2/events", start=iso(20), end=iso(60)).json()["data"]
    assert [e["message_id"] for e in window] == ["m5", "m4", "m3", "m2"]
    tracks = get(read_api, "user_id:ada-2/events", include="Order Completed").json()["data"]
    assert [e["message_id"] for e in tracks] == ["m8"]
    event = tracks[0]
    assert (event["type"], event["event"], event["properties"], event["timestamp"]) == (
        "track",
        "Order Completed",
        {"revenue": 42},
        iso(80),
    )
    assert event["external_ids"] == [
        {"collection": "users", "type": "user_id", "id": "ada-2", "encoding": "none"}
    ]
    assert event["related"] == {"users": "ada-2"}
    excluded = get(read_api, "user_id:ada-2/events", exclude="Order Completed", limit=100).json()["data"]
    assert "m8" not in [e["message_id"] for e in excluded] and len(excluded) == 8


def test_metadata_and_links(read_api: ReadApi) -> None:
    seeded(read_api)
    metadata = get(read_api, "user_id:ada-2/metadata").json()["metadata"]
    assert metadata["created_at"] == iso(10) and metadata["updated_at"] == iso(90)
    assert (metadata["first_message_id"], metadata["last_message_id"], metadata["expires_at"]) == (
        "m1",
        "a1",
        None,
    )
    links = get(read_api, "user_id:ada/links").json()["data"]
    assert links == [
        {
            "to_collection": "accounts",
            "external_ids": [
                {
                    "id": "acme",
                    "type": "group_id",
                    "source_id": None,
                    "collection": "accounts",
                    "created_at": iso(40),
                    "encoding": "none",
                }
            ],
        }
    ]


def test_errors_have_segments_shape(read_api: ReadApi) -> None:
    seeded(read_api)
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("user_id:nobody/traits", {}, 404, "not_found"),
        ("user_id:ada-phone/traits", {}, 404, "not_found"),  # an anonymousId, not a userId
        ("email:nobody@example.com/traits", {}, 404, "not_found"),
        ("phone:123/traits", {}, 400, "validation_error"),
        ("user_id:/traits", {}, 400, "validation_error"),
        ("user_id:ada/traits", {"limit": "0"}, 400, "validation_error"),
        ("user_id:ada/traits", {"limit": "201"}, 400, "validation_error"),
        ("user_id:ada/events", {"limit": "101"}, 400, "validation_error"),
        ("user_id:ada/events", {"sort": "sideways"}, 400, "validation_error"),
        ("user_id:ada/events", {"start": "yesterday"}, 400, "validation_error"),
        ("user_id:ada/events", {"next": "garbage"}, 400, "validation_error"),
        ("user_id:ada/traits", {"class": "other"}, 400, "validation_error"),
        ("user_id:ada/traits", {"bogus": "1"}, 400, "validation_error"),
    ]
    for path, params, status, code in cases:
        response = get(read_api, path, **params)
        assert response.status_code == status, (path, params, response.text)
        error = response.json()["error"]
        assert error["code"] == code and error["message"], (path, params, error)
    assert (
        get(read_api, "user_id:ada/traits", limit="0")
        .json()["error"]["message"]
        .startswith("The parameter `limit`")
    )
    assert get(read_api, "user_id:nobody/traits").json() == {
        "error": {"code": "not_found", "message": "Profile was not found."}
    }
    # Segment's own cursor bookkeeping parameters are accepted and ignored.
    assert get(read_api, "user_id:ada/traits", **{":collection": "users"}).status_code == 200


def test_basic_auth_with_the_read_or_admin_token_and_the_configured_space(read_api: ReadApi) -> None:
    seeded(read_api)
    assert get(read_api, "user_id:ada/traits", token=read_api.settings.admin_token).status_code == 200
    for headers in (
        {},
        basic("wrong"),
        {"Authorization": f"Bearer {read_api.settings.read_token}"},
        {"Authorization": "Basic !!!"},
    ):
        response = read_api.http.get(f"{BASE}/user_id:ada/traits", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "authentication_error"
        assert response.headers["www-authenticate"].startswith("Basic")
    other = read_api.http.get(
        "/v1/spaces/elsewhere/collections/users/profiles/user_id:ada/traits",
        headers=basic(read_api.settings.read_token),
    )
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
