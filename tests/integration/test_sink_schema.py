"""The storage contract on chDB: dedup tokens, lookup tables, and the analyst views' merges."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse import tables
from feedhouse.clickhouse.client import database_for
from feedhouse.ids import DEFAULT_PLACEHOLDERS
from feedhouse.settings import Settings
from feedhouse.sink.datums import EventDatums
from feedhouse.sink.writer import TableWriter

pytestmark = pytest.mark.integration
T0 = 1_700_000_000_000_000


def never_wait(_seconds: float) -> bool:
    raise AssertionError("no retry expected")


def writer(client: Client, settings: Settings, table: str, columns: tuple[str, ...]) -> TableWriter:
    return TableWriter(client, database_for(settings), table, columns)


def state(
    id_: str,
    traits: dict[str, Any],
    times: dict[str, int],
    version: int,
    group: str | None = None,
    group_time: int | None = None,
    audiences: dict[str, Any] | None = None,
) -> tuple[Any, ...]:
    return tables.ID_STATE.row_builder()(
        {
            "id": id_,
            "traits": orjson.dumps(traits).decode(),
            "traitTimes": orjson.dumps(times).decode(),
            "groupId": group,
            "groupTime": group_time,
            "audiences": orjson.dumps(audiences or {}).decode(),
            "version": version,
            "updatedAt": T0,
        }
    )


def mapping(id_: str, profile: str, version: int) -> tuple[Any, ...]:
    return tables.ID_MAPPING.row_builder()(
        {"id": id_, "profileId": profile, "version": version, "conflicts": [], "updatedAt": T0}
    )


def rows(client: Client, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in client.query(sql).result_rows]


def test_a_retried_insert_with_the_same_token_is_applied_once(clickhouse: Client, settings: Settings) -> None:
    events = writer(clickhouse, settings, "events", tables.EVENTS.column_names)
    batch = [
        tables.EVENTS.row_builder(placeholders=DEFAULT_PLACEHOLDERS)(
            {
                "type": "track",
                "messageId": f"m-{i}",
                "userId": "u",
                "anonymousId": None,
                "groupId": None,
                "previousId": None,
                "event": "E",
                "name": None,
                "category": None,
                "timestamp": T0 + i,
                "receivedAt": T0 + i,
                "originalTimestamp": None,
                "sentAt": None,
                "properties": None,
                "traits": None,
                "context": None,
                "integrations": None,
                "extra": None,
                "sourceId": "s",
            }
        )
        for i in range(10)
    ]
    assert events.write(batch, "token-1", never_wait) == []
    assert events.write(batch, "token-1", never_wait) == []  # the retry of an insert that landed
    # Raw rows, no FINAL: the repeat was dropped at insert time, not merely hidden by queries.
    assert rows(clickhouse, "SELECT count() FROM events") == [(10,)]
    assert events.write(batch, "token-2", never_wait) == []  # a replay in another batch shape
    assert rows(clickhouse, "SELECT count() FROM events") == [(20,)]
    assert rows(clickhouse, "SELECT count() FROM events FINAL") == [(10,)]


def test_a_retried_container_of_datums_is_applied_once(clickhouse: Client, settings: Settings) -> None:
    # The sink's path for events: Avro datums in a container, decoded by ClickHouse; the same
    # token drops a repeat in events (the lookup tables its views fill collapse it by key).
    datums = EventDatums(DEFAULT_PLACEHOLDERS)
    codec = AvroCodec("event")
    records = [
        {field["name"]: None for field in codec.raw_schema["fields"]}
        | {"type": "page", "messageId": f"p-{i}", "anonymousId": "a", "timestamp": T0 + i, "receivedAt": T0}
        | {"sourceId": "s", "name": "Home"}
        for i in range(10)
    ]
    batch = [datums.datum(codec.encode(record))[0] for record in records]
    events = TableWriter(
        clickhouse, database_for(settings), "events", tables.EVENTS.column_names, container=datums.container
    )
    assert events.write(batch, "token-1", never_wait) == []
    assert events.write(batch, "token-1", never_wait) == []
    assert rows(clickhouse, "SELECT count() FROM events") == [(10,)]
    for table in ("events_by_person_time", "events_by_time"):
        assert rows(clickhouse, f"SELECT count() FROM {table} FINAL") == [(10,)], table
    assert rows(clickhouse, "SELECT DISTINCT person_key, name FROM events") == [("a", "Home")]


def test_ids_of_a_profile_come_from_the_lookup_verified_against_the_mapping(
    clickhouse: Client, settings: Settings
) -> None:
    ids = writer(clickhouse, settings, "id_mapping", tables.ID_MAPPING.column_names)
    ids.write(
        [mapping("a-1", "a-1", 1), mapping("u-1", "u-1", 1), mapping("a-2", "u-1", 1)], "t1", never_wait
    )
    ids.write([mapping("a-1", "u-1", 2), mapping("a-2", "u-2", 2)], "t2", never_wait)  # a-2 moved away
    candidates = rows(
        clickhouse, "SELECT id FROM id_mapping_by_profile FINAL WHERE profile_id = 'u-1' ORDER BY id"
    )
    assert candidates == [("a-1",), ("a-2",), ("u-1",)]  # a-2's stale row is still there
    verified = rows(
        clickhouse,
        "SELECT id FROM id_mapping_by_profile FINAL WHERE profile_id = 'u-1'"
        " AND id IN (SELECT id FROM id_mapping WHERE id IN"
        " (SELECT id FROM id_mapping_by_profile WHERE profile_id = 'u-1')"
        " GROUP BY id HAVING argMax(profile_id, version) = 'u-1') ORDER BY id",
    )
    assert verified == [("a-1",), ("u-1",)]


def test_trait_group_and_audience_lookups(clickhouse: Client, settings: Settings) -> None:
    states = writer(clickhouse, settings, "id_state", tables.ID_STATE.column_names)
    vip = {"vip": {"member": True, "time": T0 + 3, "enteredAt": T0 + 3, "exitedAt": None}}
    states.write(
        [
            state("u-1", {"email": "old@x.io"}, {"email": T0}, 1, "g-1", T0),
            state(
                "u-1",
                {"email": "new@x.io", "age": 41, "score": 2.5, "beta": True, "tags": ["a"], "none": None},
                {"email": T0 + 1},
                2,
                "g-2",
                T0 + 1,
                vip,
            ),
        ],
        "t1",
        never_wait,
    )
    traits = rows(
        clickhouse, "SELECT key, value, id, version FROM id_state_by_trait FINAL ORDER BY key, value"
    )
    # Scalars only (no arrays, objects or nulls); strings unquoted, numbers and booleans as JSON text.
    assert traits == [
        ("age", "41", "u-1", 2),
        ("beta", "true", "u-1", 2),
        ("email", "new@x.io", "u-1", 2),
        ("email", "old@x.io", "u-1", 1),
        ("score", "2.5", "u-1", 2),
    ]
    # "People whose email is old@x.io": a candidate, refused by the current state.
    current = rows(
        clickhouse,
        "SELECT t.id FROM id_state_by_trait AS t INNER JOIN id_state_current AS s ON s.id = t.id"
        " WHERE t.key = 'email' AND t.value = 'old@x.io' AND JSONExtractString(s.traits, 'email') = t.value",
    )
    assert current == []
    groups = rows(clickhouse, "SELECT group_id, id FROM id_state_by_group FINAL ORDER BY group_id")
    assert groups == [("g-1", "u-1"), ("g-2", "u-1")]  # g-1 is stale: verify with id_state
    audience = rows(
        clickhouse,
        "SELECT audience, id, member, toUnixTimestamp64Micro(entered_at), exited_at"
        " FROM id_state_by_audience",
    )
    assert audience == [("vip", "u-1", 1, T0 + 3, None)]


def test_profiles_merge_their_ids_newest_trait_time_wins(clickhouse: Client, settings: Settings) -> None:
    states = writer(clickhouse, settings, "id_state", tables.ID_STATE.column_names)
    ids = writer(clickhouse, settings, "id_mapping", tables.ID_MAPPING.column_names)
    groups = writer(clickhouse, settings, "group_state", tables.GROUP_STATE.column_names)
    audience_old = {"vip": {"member": True, "time": T0 + 1, "enteredAt": T0 + 1, "exitedAt": None}}
    audience_new = {"vip": {"member": False, "time": T0 + 9, "enteredAt": T0 + 1, "exitedAt": T0 + 9}}
    states.write(
        [
            # The anonymous device set plan later than the user id did: its value wins.
            state(
                "a-1",
                {"plan": "pro", "email": "a@x"},
                {"plan": T0 + 5, "email": T0},
                1,
                "g-old",
                T0,
                audience_new,
            ),
            state(
                "u-1", {"plan": "free", "email": "u@x"}, {"plan": T0 + 1, "email": T0 + 1}, 4, "g-new", T0 + 2
            ),
            state("u-1", {"plan": "stale"}, {"plan": T0 + 99}, 3),  # an older version: ignored
            state("u-2", {"plan": "basic"}, {"plan": T0}, 1, None, None, audience_old),
        ],
        "t1",
        never_wait,
    )
    ids.write(
        [mapping("a-1", "u-1", 1), mapping("u-1", "u-1", 1), mapping("u-2", "u-2", 1)], "t1", never_wait
    )
    groups.write(
        [
            tables.GROUP_STATE.row_builder()(
                {
                    "groupId": "g-new",
                    "traits": '{"name":"Acme"}',
                    "traitTimes": "{}",
                    "version": 1,
                    "updatedAt": T0,
                }
            )
        ],
        "t1",
        never_wait,
    )
    profiles = rows(
        clickhouse,
        "SELECT profile_id, ids, traits, group_id, event_count, audiences, first_seen"
        " FROM profiles ORDER BY profile_id",
    )
    assert profiles == [
        ("u-1", ["a-1", "u-1"], '{"email":"u@x","plan":"pro"}', "g-new", 0, [], None),
        ("u-2", ["u-2"], '{"plan":"basic"}', "", 0, ["vip"], None),
    ]
    membership = rows(
        clickhouse,
        "SELECT profile_id, audience, member, toUnixTimestamp64Micro(exited_at) FROM audience_membership"
        " ORDER BY profile_id",
    )
    assert membership == [("u-1", "vip", False, T0 + 9), ("u-2", "vip", True, None)]
    assert rows(clickhouse, "SELECT group_id, traits, member_count FROM groups ORDER BY group_id") == [
        ("g-new", '{"name":"Acme"}', 1),
        ("g-old", "{}", 0),  # a group someone was in: known, no current member
    ]
