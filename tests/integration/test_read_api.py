"""The read API on real chDB: profiles, timelines, the feed, search, groups and audiences.

Data goes in as Segment calls through the pipeline's own stages (``ReadApi.send``), or as raw
rows where a test needs what only a misbehaving network produces (redelivered copies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.tables import EVENTS
from feedhouse.ids import DEFAULT_PLACEHOLDERS
from tests.conftest import ReadApi

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
AUDIENCE = {"computation_class": "audience", "computation_key": "vip_users", "space_id": "spa_1"}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def iso(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def call(kind: str, message_id: str, seconds: float, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "messageId": message_id, "timestamp": at(seconds), **fields}


def journey() -> list[dict[str, Any]]:
    """Ada browses anonymously on two devices, signs up, is re-keyed by alias, joins groups."""
    return [
        call("page", "m1", 10, anonymousId="ada-phone", name="Home", properties={"path": "/"}),
        call("track", "m2", 20, anonymousId="ada-phone", event="Product Viewed", properties={"sku": "a"}),
        call(
            "identify",
            "m3",
            30,
            userId="ada",
            anonymousId="ada-phone",
            traits={"email": "ada@old.example", "plan": "free"},
        ),
        call("group", "m4", 40, userId="ada", groupId="acme", traits={"name": "Acme"}),
        call("alias", "m5", 50, previousId="ada", userId="ada-2"),
        call("page", "m6", 60, anonymousId="ada-laptop", name="Pricing"),
        call(
            "identify",
            "m7",
            70,
            userId="ada-2",
            anonymousId="ada-laptop",
            traits={"email": "ada@example.com"},
        ),
        call("track", "m8", 80, userId="ada-2", event="Order Completed", properties={"revenue": 42}),
        # Another person, for the feed and the lists.
        call("identify", "b1", 15, userId="bob", traits={"email": "bob@example.com", "plan": "pro"}),
        call("group", "b2", 45, userId="bob", groupId="acme"),
    ]


def test_a_profile_comes_back_whole_from_any_of_its_ids(read_api: ReadApi) -> None:
    read_api.send(*journey())
    profiles = [read_api.get(f"/v1/profiles/{i}").json() for i in ("ada-phone", "ada", "ada-2", "ada-laptop")]
    assert all(profile == profiles[0] for profile in profiles)
    profile = profiles[0]
    assert profile["id"] == "ada-2"
    assert profile["ids"] == ["ada", "ada-2", "ada-laptop", "ada-phone"]
    assert profile["userIds"] == ["ada", "ada-2"]
    assert profile["anonymousIds"] == ["ada-laptop", "ada-phone"]
    assert profile["eventCount"] == 8
    assert profile["firstSeen"] == iso(10) and profile["lastSeen"] == iso(80)
    assert profile["traits"] == {"email": "ada@example.com", "plan": "free"}
    assert profile["group"] == {"id": "acme", "traits": {"name": "Acme"}}
    assert profile["audiences"] == {}


def test_an_alias_chain_resolves_to_its_end_from_every_id(read_api: ReadApi) -> None:
    read_api.send(*journey(), call("alias", "m9", 90, previousId="ada-2", userId="ada-3"))
    for identifier in ("ada-phone", "ada", "ada-2", "ada-laptop", "ada-3"):
        profile = read_api.get(f"/v1/profiles/{identifier}").json()
        assert profile["id"] == "ada-3", identifier
        assert profile["ids"] == ["ada", "ada-2", "ada-3", "ada-laptop", "ada-phone"]
    assert timeline_ids(read_api, "ada-phone", limit=2) == ["m9", "m8"]


def test_an_id_never_seen_is_404(read_api: ReadApi) -> None:
    read_api.send(*journey())
    for path in ("/v1/profiles/nobody", "/v1/profiles/nobody/timeline", "/v1/profiles/anonymous"):
        response = read_api.get(path)
        assert response.status_code == 404, path
        assert response.json()["success"] is False and response.json()["code"] == "not_found"


def test_traits_merge_across_ids_and_the_newest_event_time_wins(read_api: ReadApi) -> None:
    read_api.send(
        call("identify", "t1", 100, userId="cy", traits={"plan": "pro", "email": "cy@example.com"}),
        # An anonymous identify on a device, later, then the device is linked to cy.
        call("identify", "t2", 200, anonymousId="cy-tab", traits={"plan": "team", "theme": "dark"}),
        call("track", "t3", 300, userId="cy", anonymousId="cy-tab", event="Linked"),
        # A late, older identify must not overwrite newer values.
        call("identify", "t4", 50, userId="cy", traits={"plan": "starter", "theme": "light", "age": 41}),
    )
    profile = read_api.get("/v1/profiles/cy-tab").json()
    assert profile["id"] == "cy"
    assert profile["traits"] == {"age": 41, "email": "cy@example.com", "plan": "team", "theme": "dark"}


def test_group_membership_follows_the_latest_group_call_of_the_profile(read_api: ReadApi) -> None:
    read_api.send(
        call("group", "g1", 100, userId="dee", groupId="initech", traits={"name": "Initech", "seats": 5}),
        call(
            "identify", "g2", 110, userId="dee", anonymousId="dee-phone", traits={"email": "dee@example.com"}
        ),
        call("group", "g3", 200, anonymousId="dee-phone", groupId="globex", traits={"name": "Globex"}),
        call("group", "g4", 150, userId="dee", groupId="hooli"),  # late: older than globex
        call("group", "g5", 120, userId="eve", groupId="globex"),
    )
    assert read_api.get("/v1/profiles/dee").json()["group"] == {"id": "globex", "traits": {"name": "Globex"}}
    globex = read_api.get("/v1/groups/globex").json()
    assert globex == {
        "id": "globex",
        "traits": {"name": "Globex"},
        "members": ["dee", "eve"],
        "memberCount": 2,
        "next": None,
    }
    # Groups someone was once in exist, with no current members.
    initech = read_api.get("/v1/groups/initech").json()
    assert (initech["traits"], initech["members"], initech["memberCount"]) == (
        {"name": "Initech", "seats": 5},
        [],
        0,
    )
    assert read_api.get("/v1/groups/hooli").json()["memberCount"] == 0
    assert read_api.get("/v1/groups/umbrella").status_code == 404
    page = read_api.get("/v1/groups/globex", limit=1).json()
    assert (page["members"], page["memberCount"]) == (["dee"], 2)
    rest = read_api.get("/v1/groups/globex", limit=1, cursor=page["next"]).json()
    assert (rest["members"], rest["next"]) == (["eve"], None)


def audience_call(message_id: str, seconds: float, member: bool, **ids: str) -> dict[str, Any]:
    return call(
        "identify", message_id, seconds, traits={"vip_users": member}, context={"personas": AUDIENCE}, **ids
    )


def test_audiences_keep_entered_and_exited_times(read_api: ReadApi) -> None:
    read_api.send(
        audience_call("a1", 100, True, userId="fay"),
        audience_call("a2", 200, False, userId="fay"),
        audience_call("a3", 150, True, userId="gus"),
        call("identify", "a4", 160, userId="gus", anonymousId="gus-phone"),
        audience_call("a5", 300, True, anonymousId="hal-phone"),
    )
    fay = read_api.get("/v1/profiles/fay").json()
    engage = {"computedBy": "engage"}
    assert fay["audiences"] == {
        "vip_users": {"member": False, "enteredAt": iso(100), "exitedAt": iso(200), **engage}
    }
    gus = read_api.get("/v1/profiles/gus-phone").json()
    assert gus["audiences"] == {
        "vip_users": {"member": True, "enteredAt": iso(150), "exitedAt": None, **engage}
    }
    assert read_api.get("/v1/audiences").json() == {"audiences": [{"key": "vip_users", "size": 2, **engage}]}
    members = read_api.get("/v1/audiences/vip_users/members").json()
    assert members == {"members": ["gus", "hal-phone"], "size": 2, "next": None, **engage}
    first = read_api.get("/v1/audiences/vip_users/members", limit=1).json()
    assert first["members"] == ["gus"] and first["next"]
    assert read_api.get("/v1/audiences/vip_users/members", cursor=first["next"]).json()["members"] == [
        "hal-phone"
    ]
    assert read_api.get("/v1/audiences/nope/members").status_code == 404


def timeline_ids(read_api: ReadApi, profile: str, **params: Any) -> list[str]:
    return [
        event["messageId"]
        for event in read_api.get(f"/v1/profiles/{profile}/timeline", **params).json()["events"]
    ]


def test_timeline_has_every_id_newest_first_with_pages_hidden_by_default(read_api: ReadApi) -> None:
    read_api.send(*journey())
    assert timeline_ids(read_api, "ada-phone") == ["m8", "m7", "m5", "m4", "m3", "m2"]
    assert timeline_ids(read_api, "ada", hidden="true") == ["m8", "m7", "m6", "m5", "m4", "m3", "m2", "m1"]
    assert timeline_ids(read_api, "ada", type="page") == ["m6", "m1"]
    assert timeline_ids(read_api, "ada", type="identify,alias") == ["m7", "m5", "m3"]
    assert timeline_ids(read_api, "ada", type=["identify", "group"]) == ["m7", "m4", "m3"]
    assert timeline_ids(read_api, "ada", event="Order Completed") == ["m8"]
    assert timeline_ids(read_api, "ada", event=["Order Completed", "Product Viewed"]) == ["m8", "m2"]
    event = read_api.get("/v1/profiles/ada/timeline", limit=1).json()["events"][0]
    assert event["type"] == "track" and event["userId"] == "ada-2" and event["anonymousId"] is None
    assert event["properties"] == {"revenue": 42} and event["traits"] is None
    assert event["timestamp"] == iso(80) and event["originalTimestamp"] == at(80)
    assert event["receivedAt"].endswith("Z") and event["sentAt"] is None and "extra" not in event


def test_unknown_top_level_fields_come_back_as_extra(read_api: ReadApi) -> None:
    read_api.send(call("track", "x1", 1, userId="ivy", event="Clicked", channel="server", custom={"a": 1}))
    event = read_api.get("/v1/profiles/ivy/timeline").json()["events"][0]
    assert event["extra"] == {"channel": "server", "custom": {"a": 1}}


def insert_copy(clickhouse: Client, record: dict[str, Any], **changes: Any) -> None:
    """Store another copy of an event record, as a redelivery or a sink replay would."""
    row = EVENTS.row_builder(placeholders=DEFAULT_PLACEHOLDERS)({**record, **changes})
    clickhouse.insert("events", [row], column_names=list(EVENTS.column_names))


def test_pages_neither_repeat_nor_skip_while_events_arrive(read_api: ReadApi, clickhouse: Client) -> None:
    calls = [call("track", f"e{i:02d}", i * 10, userId="jo", event="Step") for i in range(30)]
    # Same timestamp for several events: the messageId breaks the tie.
    calls += [call("track", f"same{i}", 155, userId="jo", event="Step") for i in range(3)]
    read_api.send(*calls)
    before = set(timeline_ids(read_api, "jo", limit=500))
    seen: list[str] = []
    cursor = None
    for page_number in range(100):
        params: dict[str, Any] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = read_api.get("/v1/profiles/jo/timeline", **params).json()
        seen += [event["messageId"] for event in body["events"]]
        # Between pages: newer events, and redeliveries of events already shown and not yet shown.
        read_api.send(call("track", f"new{page_number}", 10_000 + page_number, userId="jo", event="Step"))
        for record in list(read_api.pipeline_records(("e03", "e25", "same1"))):
            insert_copy(clickhouse, record, receivedAt=record["receivedAt"] + 1000 * (page_number + 1))
        cursor = body["next"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an event was repeated"
    assert set(seen) == before, "an event was skipped (or a newer one leaked into later pages)"
    positions = [
        (event["timestamp"], event["messageId"])
        for event in read_api.get("/v1/profiles/jo/timeline", limit=500).json()["events"]
    ]
    assert positions == sorted(positions, reverse=True)


def test_a_redelivered_event_is_shown_once_everywhere(read_api: ReadApi, clickhouse: Client) -> None:
    read_api.send(call("track", "d1", 10, userId="kim", event="Paid"), call("page", "d2", 20, userId="kim"))
    record = read_api.pipeline_records(("d1",))[0]
    # A resend: received later, its clock-skew correction moved the timestamp a little.
    insert_copy(
        clickhouse, record, receivedAt=record["receivedAt"] + 5_000_000, timestamp=record["timestamp"] + 3000
    )
    insert_copy(clickhouse, record, receivedAt=record["receivedAt"] + 1)  # an older copy than the resend
    assert timeline_ids(read_api, "kim", hidden="true") == ["d2", "d1"]
    shown = read_api.get("/v1/profiles/kim/timeline", type="track").json()["events"]
    assert len(shown) == 1 and shown[0]["timestamp"] == iso(10.003)  # the newest receipt wins
    profile = read_api.get("/v1/profiles/kim").json()
    assert profile["eventCount"] == 2 and profile["firstSeen"] == iso(10.003)
    feed = read_api.get("/v1/feed", hidden="true").json()["events"]
    assert [event["messageId"] for event in feed] == ["d2", "d1"]


def test_the_feed_spans_profiles_with_their_resolved_profile(read_api: ReadApi, clickhouse: Client) -> None:
    read_api.send(*journey())
    body = read_api.get("/v1/feed", hidden="true").json()
    assert [(e["messageId"], e["profileId"]) for e in body["events"]] == [
        ("m8", "ada-2"),
        ("m7", "ada-2"),
        ("m6", "ada-2"),
        ("m5", "ada-2"),
        ("b2", "bob"),
        ("m4", "ada-2"),
        ("m3", "ada-2"),
        ("m2", "ada-2"),
        ("b1", "bob"),
        ("m1", "ada-2"),
    ]
    assert body["next"] is None
    assert [e["messageId"] for e in read_api.get("/v1/feed").json()["events"]] == [
        "m8", "m7", "m5", "b2", "m4", "m3", "m2", "b1",
    ]  # fmt: skip
    assert [e["messageId"] for e in read_api.get("/v1/feed", type="group").json()["events"]] == ["b2", "m4"]
    # Paging through with redeliveries and new events arriving in between.
    seen: list[str] = []
    cursor = None
    for page_number in range(20):
        params: dict[str, Any] = {"limit": 3, "hidden": "true"}
        if cursor:
            params["cursor"] = cursor
        page = read_api.get("/v1/feed", **params).json()
        seen += [event["messageId"] for event in page["events"]]
        read_api.send(call("track", f"late{page_number}", 1000 + page_number, userId="bob", event="New"))
        for record in read_api.pipeline_records(("m3", "b1")):
            insert_copy(clickhouse, record, receivedAt=record["receivedAt"] + 1000 * (page_number + 1))
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["m8", "m7", "m6", "m5", "b2", "m4", "m3", "m2", "b1", "m1"]


def test_placeholder_only_events_are_in_the_feed_without_a_profile(read_api: ReadApi) -> None:
    read_api.send(call("track", "p1", 5, userId="undefined", anonymousId="null", event="Ghost"))
    [event] = read_api.get("/v1/feed").json()["events"]
    assert (event["messageId"], event["profileId"]) == ("p1", None)


def test_search_by_trait_group_and_audience_uses_the_merged_state(read_api: ReadApi) -> None:
    read_api.send(
        *journey(),
        audience_call("v1", 90, True, userId="bob"),
        audience_call("v2", 95, True, userId="ada-2"),
    )
    found = read_api.get("/v1/profiles", **{"trait.email": "ada@example.com"}).json()
    assert found["total"] == 1 and found["next"] is None
    assert found["profiles"] == [
        {
            "id": "ada-2",
            "traits": {"email": "ada@example.com", "plan": "free", "vip_users": True},
            "groupId": "acme",
            "lastSeen": iso(95),
        }
    ]
    # The old email is a stale lookup row: the merged traits say otherwise.
    assert read_api.get("/v1/profiles", **{"trait.email": "ada@old.example"}).json()["total"] == 0
    assert [p["id"] for p in read_api.get("/v1/profiles", group="acme").json()["profiles"]] == [
        "ada-2",
        "bob",
    ]
    both = read_api.get("/v1/profiles", group="acme", **{"trait.plan": "pro"}).json()
    assert [p["id"] for p in both["profiles"]] == ["bob"]
    assert read_api.get("/v1/profiles", audience="vip_users", **{"trait.plan": "free"}).json()["total"] == 1
    page = read_api.get("/v1/profiles", audience="vip_users", limit=1).json()
    assert (page["total"], [p["id"] for p in page["profiles"]]) == (2, ["ada-2"])
    rest = read_api.get("/v1/profiles", audience="vip_users", limit=1, cursor=page["next"]).json()
    assert [p["id"] for p in rest["profiles"]] == ["bob"] and rest["next"] is None
    assert read_api.get("/v1/profiles", **{"trait.logins": "41"}).json()["total"] == 0


def test_listing_profiles_pages_through_canonical_ids_only(read_api: ReadApi) -> None:
    read_api.send(*journey(), call("page", "z1", 1, anonymousId="zed-phone"))
    listed: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        body = read_api.get("/v1/profiles", **params).json()
        assert body["total"] is None
        listed += [profile["id"] for profile in body["profiles"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert listed == ["ada-2", "bob", "zed-phone"]


def test_stale_mapping_rows_do_not_leak_ids_into_a_profile(read_api: ReadApi, clickhouse: Client) -> None:
    read_api.send(*journey())
    # id_mapping_by_profile still holds ("ada", "ada") and ("ada", "ada-phone") from before the alias.
    stale = clickhouse.query("SELECT id FROM id_mapping_by_profile WHERE profile_id = 'ada' ORDER BY id")
    assert [row[0] for row in stale.result_rows] == ["ada", "ada-phone"]
    profile = read_api.get("/v1/profiles/ada").json()
    assert profile["id"] == "ada-2"
    bob = read_api.get("/v1/profiles/bob").json()
    assert bob["ids"] == ["bob"] and bob["eventCount"] == 2


def test_events_known_only_to_the_identity_tables_still_make_a_profile(read_api: ReadApi) -> None:
    # A mapping published before the events reached ClickHouse: the id is known, with no events.
    read_api.send(call("identify", "k1", 5, userId="lea", anonymousId="lea-phone", traits={"a": 1}))
    read_api.clickhouse.command("TRUNCATE TABLE events")
    profile = read_api.get("/v1/profiles/lea-phone").json()
    assert (profile["id"], profile["eventCount"], profile["firstSeen"]) == ("lea", 0, None)
    assert (
        profile["ids"] == ["lea", "lea-phone"] and profile["userIds"] == [] and profile["traits"] == {"a": 1}
    )
    assert read_api.get("/v1/profiles/lea/timeline").json() == {"events": [], "next": None}
