"""The admin API and the read API over real chDB: definitions, status, sizes, destinations, and
profiles / audience lists showing both Engage's and Feedhouse's audiences."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client
from starlette.applications import Starlette
from starlette.testclient import TestClient

from feedhouse.audiences.admin import admin_routes, audience_definitions
from feedhouse.read.api import read_routes
from feedhouse.read.queries import search
from feedhouse.settings import Settings
from tests.conftest import ReadApi
from tests.support.audiences import Harness, ids_of

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


class Api:
    def __init__(self, settings: Settings, clickhouse: Client) -> None:
        app = Starlette(
            routes=read_routes(settings, lambda: clickhouse, audience_definitions)
            + admin_routes(settings, lambda: clickhouse)
        )
        self.http = TestClient(app)
        self.admin = {"Authorization": f"Bearer {settings.admin_token}"}
        self.read = {"Authorization": f"Bearer {settings.read_token}"}

    def call(
        self, method: str, path: str, body: Any = None, *, token: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.http.request(method, path, json=body, headers=token if token is not None else self.admin)


@pytest.fixture
def api(settings: Settings, clickhouse: Client) -> Iterator[Api]:
    yield Api(settings, clickhouse)


@pytest.fixture
def harness(read_api: ReadApi) -> Harness:
    return Harness(read_api.clickhouse, int((T0 + timedelta(days=1)).timestamp() * 1_000_000))


ORDERS = {"key": "orders", "name": "Orders", "compute": {"op": "count", "event": "Order Completed"}}
BUYERS = {"key": "buyers", "name": "Buyers", "when": {"trait": "orders", "op": "gte", "value": 1}}


def test_definitions_round_trip_with_status_and_size(api: Api, harness: Harness, read_api: ReadApi) -> None:
    read_api.send(
        {"type": "track", "messageId": "o1", "timestamp": at(0), "userId": "ada", "event": "Order Completed"}
    )
    created = api.call("POST", "/v1/traits", ORDERS)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "backfilling" and body["size"] == 0 and body["revision"] == 1
    assert body["computationId"].startswith("tra_") and body["compute"] == ORDERS["compute"]
    assert api.call("POST", "/v1/audiences", BUYERS).status_code == 201
    assert api.call("POST", "/v1/audiences", {**BUYERS, "name": "Again"}).json()["code"] == "already_exists"
    assert (
        api.call("POST", "/v1/traits", {**ORDERS, "key": "buyers"}).status_code == 409
    )  # unique across kinds

    harness.backfill_all()
    shown = api.call("GET", "/v1/audiences/buyers").json()
    assert shown["status"] == "live" and shown["size"] == 1 and shown["when"]["computed"] is True
    assert [t["key"] for t in api.call("GET", "/v1/traits").json()["traits"]] == ["orders"]

    changed = api.call(
        "PUT", "/v1/traits/orders", {**ORDERS, "compute": {"op": "count", "event": "Signed Up"}}
    )
    assert (
        changed.status_code == 200
        and changed.json()["revision"] == 2
        and changed.json()["status"] == "backfilling"
    )
    # The audience testing the trait is recomputed too.
    assert api.call("GET", "/v1/audiences/buyers").json()["status"] == "backfilling"
    harness.backfill_all()
    after = api.call("GET", "/v1/audiences/buyers").json()
    assert after["status"] == "live" and after["size"] == 0  # nobody signed up

    assert api.call("DELETE", "/v1/traits/orders").json()["code"] == "in_use"
    # An audience of the audience: it must exist, it may not come back to itself, and while it
    # exists the audience it tests stays.
    unknown = api.call("POST", "/v1/audiences", {"key": "vips", "when": {"audience": "nobody"}})
    assert (unknown.status_code, unknown.json()["message"]) == (
        400,
        "when.audience: there is no audience 'nobody'",
    )
    assert (
        api.call("POST", "/v1/audiences", {"key": "vips", "when": {"audience": "buyers"}}).status_code == 201
    )
    loop = api.call("PUT", "/v1/audiences/buyers", {**BUYERS, "when": {"not": {"audience": "vips"}}})
    assert (loop.status_code, loop.json()["message"]) == (
        400,
        "when.not.audience: an audience cannot test itself (buyers -> vips -> buyers)",
    )
    in_use = api.call("DELETE", "/v1/audiences/buyers")
    assert (in_use.status_code, in_use.json()["code"]) == (409, "in_use") and "vips" in in_use.json()[
        "message"
    ]
    assert api.call("DELETE", "/v1/audiences/vips").status_code == 200
    assert api.call("DELETE", "/v1/audiences/buyers").status_code == 200
    assert api.call("GET", "/v1/audiences/buyers").status_code == 404
    assert api.call("DELETE", "/v1/traits/orders").status_code == 200
    assert api.call("GET", "/v1/traits").json() == {"traits": []}


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (
            "/v1/audiences",
            {"key": "x", "when": {"all": [{"event": "a"}, {"trait": "b", "op": "gte ", "value": 1}]}},
            "when.all[1].op: unknown operator 'gte '",
        ),
        ("/v1/traits", {"key": "Bad", "compute": {"op": "count", "event": "a"}}, "key: must be snake_case"),
        (
            "/v1/traits",
            {"key": "t", "compute": {"op": "sum", "event": "a", "property": "x;y"}},
            "compute.property:",
        ),
        ("/v1/traits", [1, 2], "body: must be a JSON object"),
    ],
)
def test_bad_definitions_are_400s_naming_the_path(api: Api, path: str, body: Any, message: str) -> None:
    response = api.call("POST", path, body)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_definition" and response.json()["message"].startswith(message)


def test_bodies_are_bounded_and_json(api: Api) -> None:
    huge = {"key": "x", "when": {"event": "a" * 70_000}}
    assert api.call("POST", "/v1/audiences", huge).status_code == 413
    response = api.http.post(
        "/v1/audiences", content=b"{not json", headers={**api.admin, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_json"


def test_destinations_hide_their_secrets_and_show_their_delivery(api: Api) -> None:
    secret = "a-long-webhook-secret-1234"
    created = api.call(
        "POST",
        "/v1/destinations",
        {"key": "hook", "type": "webhook", "url": "https://hooks.example/x", "secret": secret},
    )
    assert created.status_code == 201
    assert secret not in created.text and created.json()["secret"] == "...1234"
    assert created.json()["delivery"]["initialSync"] == "pending"
    assert (
        api.call(
            "POST", "/v1/destinations", {"key": "hook", "type": "webhook", "url": "https://h.example"}
        ).status_code
        == 409
    )
    assert (
        api.call("POST", "/v1/destinations", {"key": "seg", "type": "segment"}).json()["code"]
        == "invalid_destination"
    )
    listed = api.call("GET", "/v1/destinations").json()["destinations"]
    assert [d["key"] for d in listed] == ["hook"] and secret not in str(listed)
    assert api.call("DELETE", "/v1/destinations/hook").status_code == 200
    assert api.call("GET", "/v1/destinations/hook").status_code == 404
    again = api.call(
        "POST", "/v1/destinations", {"key": "hook", "type": "webhook", "url": "https://h.example"}
    )
    assert again.status_code == 201 and again.json()["destinationId"] != created.json()["destinationId"]


def test_profiles_and_audience_lists_show_both_systems(api: Api, harness: Harness, read_api: ReadApi) -> None:
    engage = {
        "computation_class": "audience",
        "computation_key": "vip",
        "computation_id": "aud_e",
        "space_id": "spa_x",
    }
    calls: list[dict[str, Any]] = [
        {
            "type": "identify",
            "messageId": "e1",
            "timestamp": at(1),
            "userId": "ada",
            "traits": {"vip": True, "plan": "pro"},
            "context": {"personas": engage},
        },
        {
            "type": "track",
            "messageId": "o1",
            "timestamp": at(2),
            "anonymousId": "dev-1",
            "event": "Order Completed",
        },
        {"type": "identify", "messageId": "i1", "timestamp": at(3), "userId": "ada", "anonymousId": "dev-1"},
        # A buyer known only by a device: no identify, so no id state at all.
        {
            "type": "track",
            "messageId": "o2",
            "timestamp": at(4),
            "anonymousId": "dev-9",
            "event": "Order Completed",
        },
        {
            "type": "identify",
            "messageId": "e2",
            "timestamp": at(1),
            "userId": "bob",
            "traits": {"vip": True},
            "context": {"personas": engage},
        },
    ]
    read_api.send(*calls)
    api.call("POST", "/v1/traits", ORDERS)
    api.call("POST", "/v1/audiences", BUYERS)
    api.call("POST", "/v1/audiences", {"key": "vip", "when": {"trait": "plan", "op": "eq", "value": "pro"}})
    harness.backfill_all()
    harness.touch(ids_of(calls))

    profile = api.call("GET", "/v1/profiles/dev-1", token=api.read).json()
    assert profile["id"] == "ada"
    assert profile["traits"]["orders"] == 1 and profile["computedTraits"]["orders"]["value"] == 1
    assert (
        profile["audiences"]["buyers"]["member"] is True
        and profile["audiences"]["buyers"]["computedBy"] == "feedhouse"
    )
    # Engage and Feedhouse both have a "vip": Feedhouse's under the key, Engage's beside it.
    assert profile["audiences"]["vip"]["computedBy"] == "feedhouse"
    assert profile["audiences"]["engage:vip"] == {
        "member": True,
        "enteredAt": profile["audiences"]["engage:vip"]["enteredAt"],
        "exitedAt": None,
        "computedBy": "engage",
    }

    listed = api.call("GET", "/v1/audiences", token=api.read).json()["audiences"]
    assert {(a["key"], a["computedBy"], a["size"]) for a in listed} == {
        ("vip", "engage", 2),
        ("buyers", "feedhouse", 2),
        ("vip", "feedhouse", 1),
    }
    assert all("when" not in a for a in listed)  # definitions need the admin token
    as_admin = api.call("GET", "/v1/audiences").json()["audiences"]
    assert {a["key"]: a.get("status") for a in as_admin if a["computedBy"] == "feedhouse"} == {
        "buyers": "live",
        "vip": "live",
    }
    assert all("when" in a for a in as_admin if a["computedBy"] == "feedhouse")

    members = api.call("GET", "/v1/audiences/vip/members", token=api.read).json()
    assert members == {"members": ["ada"], "size": 1, "next": None, "computedBy": "feedhouse"}
    engage_members = api.call("GET", "/v1/audiences/vip/members?computedBy=engage", token=api.read).json()
    assert engage_members["members"] == ["ada", "bob"] and engage_members["computedBy"] == "engage"
    assert api.call("GET", "/v1/audiences/vip/members?computedBy=other", token=api.read).status_code == 400

    # People filtered by an audience: the members of either system's audience of that key.
    def searched(query: str) -> list[str]:
        body = api.call("GET", f"/v1/profiles?{query}", token=api.read).json()
        assert body["total"] == len(body["profiles"]), body
        return [p["id"] for p in body["profiles"]]

    # Feedhouse's only: Ada's order was anonymous; dev-9 has no state at all.
    assert searched("audience=buyers") == ["ada", "dev-9"]
    assert searched("audience=vip") == ["ada", "bob"]  # Engage's Ada and Bob, Feedhouse's Ada
    assert searched("audience=buyers&trait.plan=pro") == ["ada"]
    assert searched("audience=orders") == []  # a computed trait is no audience
    # The same in the queries for filters too common to verify one by one: an audience alone is
    # the union of both systems' members; with other filters, verified on the merged states.
    both = search.ProfileQuery(traits=(("plan", "pro"),), audience="buyers")
    assert search.matching_profiles(read_api.clickhouse, both, "", 10) == (1, ["ada"])
    assert search.matching_profiles(read_api.clickhouse, search.ProfileQuery(audience="buyers"), "", 10) == (
        2,
        ["ada", "dev-9"],
    )
    assert search.matching_profiles(read_api.clickhouse, search.ProfileQuery(audience="vip"), "", 10) == (
        2,
        ["ada", "bob"],
    )
