"""The read API against hostile and malformed requests, on real chDB: 401 / 400 / 404, never a 5xx."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedhouse.read.params import encode_cursor
from tests.conftest import ReadApi

pytestmark = pytest.mark.integration

HOSTILE_IDS = [
    "' OR 1=1 --",
    "\\'); DROP TABLE events; --",
    "'; DROP TABLE events; SELECT '",
    "{id:String}",
    "\\N",
    "x' UNION ALL SELECT * FROM system.tables --",
    "Zoë 🦄 名前",
    "tab\there",
    "nul\x00byte",
    "a/b",
    "..",
    "x" * 1024,
]
PATHS = [
    "/v1/profiles/{}",
    "/v1/profiles/{}/timeline",
    "/v1/groups/{}",
    "/v1/audiences/{}/members",
]
TABLES = ("events", "id_mapping", "id_mapping_by_profile", "id_state", "group_state", "id_state_by_trait")


def raw_cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode()


def seed(read_api: ReadApi) -> dict[str, int]:
    read_api.send(
        {
            "type": "identify",
            "messageId": "s1",
            "userId": "sam",
            "anonymousId": "sam-phone",
            "traits": {"e": 1},
        },
        {"type": "group", "messageId": "s2", "userId": "sam", "groupId": "acme"},
        {"type": "track", "messageId": "s3", "userId": "sam", "event": "Paid"},
    )
    return counts(read_api.clickhouse)


def counts(clickhouse: Client) -> dict[str, int]:
    return {
        table: int(clickhouse.query(f"SELECT count() FROM {table}").result_rows[0][0]) for table in TABLES
    }


def test_every_route_needs_the_bearer_read_token(read_api: ReadApi) -> None:
    seed(read_api)
    for path in (
        "/v1/profiles/sam",
        "/v1/profiles/sam/timeline",
        "/v1/feed",
        "/v1/profiles",
        "/v1/groups/acme",
    ):
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic ZGV2LXJlYWQtdG9rZW46"},
        ):
            response = read_api.http.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["code"] == "unauthorized" and response.json()["success"] is False
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert read_api.get(path).status_code == 200
    # The write key is not a read token.
    assert read_api.get("/v1/feed", token=read_api.settings.write_keys[0]).status_code == 401
    assert (
        read_api.http.get(
            "/v1/feed", headers={"Authorization": f"bearer  {read_api.settings.read_token}"}
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/v1/feed", {"limit": "0"}, "limit"),
        ("/v1/feed", {"limit": "501"}, "limit"),
        ("/v1/feed", {"limit": "ten"}, "limit"),
        ("/v1/feed", {"limit": "-1"}, "limit"),
        ("/v1/feed", {"limit": "\uff11\uff10"}, "limit"),  # fullwidth digits
        ("/v1/feed", {"limit": ["1", "2"]}, "limit"),
        ("/v1/feed", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/feed", {"cursor": ""}, "cursor"),
        ("/v1/feed", {"cursor": encode_cursor("p", "sam")}, "cursor"),
        ("/v1/feed", {"cursor": encode_cursor("e", "1", "m")}, "cursor"),
        ("/v1/feed", {"cursor": encode_cursor("e", 10**18, "m")}, "cursor"),
        ("/v1/feed", {"cursor": raw_cursor(b'["e",100000000000000000000,"m"]')}, "cursor"),
        ("/v1/feed", {"cursor": raw_cursor(b'["e",1.5,"m"]')}, "cursor"),
        ("/v1/feed", {"cursor": raw_cursor(b'["e",true,"m"]')}, "cursor"),
        ("/v1/feed", {"cursor": raw_cursor(b'["e",5,"m",7]')}, "cursor"),
        ("/v1/feed", {"cursor": raw_cursor(b'{"e":5}')}, "cursor"),
        ("/v1/feed", {"cursor": encode_cursor("e", 5, "")}, "cursor"),
        ("/v1/feed", {"cursor": "W10"}, "cursor"),
        ("/v1/feed", {"hidden": "maybe"}, "hidden"),
        ("/v1/feed", {"type": "trak"}, "type"),
        ("/v1/feed", {"type": "track,"}, "type"),
        ("/v1/feed", {"event": ""}, "event"),
        ("/v1/feed", {"limt": "5"}, "limt"),
        ("/v1/profiles/sam/timeline", {"limit": "1000"}, "limit"),
        ("/v1/profiles/sam/timeline", {"type": "page;DROP"}, "type"),
        ("/v1/profiles/sam", {"hidden": "true"}, "hidden"),
        ("/v1/profiles", {"trait.": "x"}, "trait."),
        ("/v1/profiles", {"trait.email": ""}, "trait.email"),
        ("/v1/profiles", {"cursor": encode_cursor("e", 5, "m")}, "cursor"),
        ("/v1/profiles", {"group": ""}, "group"),
        ("/v1/groups/acme", {"limit": "1001"}, "limit"),
        ("/v1/audiences/x/members", {"cursor": "%%%"}, "cursor"),
        ("/v1/audiences", {"limit": "5"}, "limit"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(
    read_api: ReadApi, path: str, params: dict[str, Any], named: str
) -> None:
    response = read_api.get(path, **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["code"] == "invalid_parameter"
    assert body["message"].startswith(f"{named}:"), body["message"]


@pytest.mark.parametrize("identifier", HOSTILE_IDS, ids=range(len(HOSTILE_IDS)))
def test_hostile_ids_are_just_unknown_ids(read_api: ReadApi, identifier: str) -> None:
    before = seed(read_api)
    for template in PATHS:
        # Dots escaped too: a client would otherwise resolve ".." as a path segment.
        response = read_api.get(template.format(quote(identifier, safe="").replace(".", "%2E")))
        assert response.status_code == 404, (template, identifier, response.text)
        assert response.json()["code"] == "not_found"
    assert read_api.get("/v1/profiles", **{f"trait.{identifier}": identifier}).json()["total"] == 0
    assert read_api.get("/v1/profiles", group=identifier, audience=identifier).json()["total"] == 0
    assert read_api.get("/v1/feed", event=identifier).json()["events"] == []
    assert counts(read_api.clickhouse) == before
    assert read_api.get("/v1/profiles/sam-phone").json()["id"] == "sam"


def test_a_hostile_id_that_was_ingested_is_served_like_any_other(read_api: ReadApi) -> None:
    odd = "o'brien\\\"; DROP TABLE events; --\t🦄"
    read_api.send(
        {
            "type": "identify",
            "messageId": "h1",
            "userId": odd,
            "anonymousId": "dev'ice",
            "traits": {"n": odd},
        },
        {"type": "track", "messageId": "h2'x", "userId": odd, "event": "It's"},
    )
    profile = read_api.get(f"/v1/profiles/{quote('dev' + chr(39) + 'ice', safe='')}").json()
    assert profile["id"] == odd and profile["traits"] == {"n": odd} and profile["eventCount"] == 2
    events = read_api.get(f"/v1/profiles/{quote(odd, safe='')}/timeline", event="It's").json()["events"]
    assert [event["messageId"] for event in events] == ["h2'x"]
    page = read_api.get(f"/v1/profiles/{quote(odd, safe='')}/timeline", limit=1).json()
    assert (
        read_api.get(f"/v1/profiles/{quote(odd, safe='')}/timeline", cursor=page["next"]).status_code == 200
    )
    assert [p["id"] for p in read_api.get("/v1/profiles", **{"trait.n": odd}).json()["profiles"]] == [odd]


def test_ids_longer_than_any_stored_id_are_refused(read_api: ReadApi) -> None:
    response = read_api.get("/v1/profiles/" + "x" * 1025)
    assert response.status_code == 400 and response.json()["message"].startswith("id:")
    assert read_api.get("/v1/groups/" + "g" * 5000).status_code == 400


SEGMENT = st.text(st.characters(codec="utf-8"), max_size=40)
QUERY_NAMES = st.sampled_from(
    ["limit", "cursor", "hidden", "type", "event", "group", "audience", "trait.email", "trait.", "x"]
)
ROUTES = st.sampled_from(
    [
        "/v1/profiles/{}",
        "/v1/profiles/{}/timeline",
        "/v1/feed",
        "/v1/profiles",
        "/v1/groups/{}",
        "/v1/audiences",
        "/v1/audiences/{}/members",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=ROUTES,
    segment=SEGMENT,
    query=st.lists(st.tuples(QUERY_NAMES, SEGMENT | st.integers(-5, 10**6).map(str)), max_size=4),
)
def test_no_path_or_query_string_gets_a_server_error(
    read_api: ReadApi, route: str, segment: str, query: list[tuple[str, str]]
) -> None:
    path = route.format(quote(segment, safe=""))
    response = read_api.http.get(
        path, params=query, headers={"Authorization": f"Bearer {read_api.settings.read_token}"}
    )
    assert response.status_code < 500, (path, query, response.text)
    assert response.headers["content-type"].startswith("application/json") or response.status_code == 404
