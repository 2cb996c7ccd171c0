"""The key-value mirrors of id_mapping and id_state (migration 0018): always the newest version
per id, whatever order the versions arrive in, the same answer as argMax over the source; and
person_seen_kv (migration 0019): each person_key's newest event time, however late events come;
profile_members_kv (migration 0020): the identity graph's newest record of each profile's ids."""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

AT = datetime(2026, 1, 1, tzinfo=UTC)

MIRRORED_MAPPINGS = """
SELECT source.id, source.profile, source.newest, mirror.profile_id, mirror.version
FROM (SELECT id, argMax(profile_id, version) AS profile, max(version) AS newest
      FROM id_mapping GROUP BY id) AS source
FULL OUTER JOIN id_mapping_kv AS mirror ON mirror.id = source.id
ORDER BY source.id
"""


def mapping(client: Client, rows: list[tuple[str, str, int]]) -> None:
    client.insert(
        "id_mapping",
        [[i, profile, version, [], AT] for i, profile, version in rows],
        column_names=["id", "profile_id", "version", "conflicts", "updated_at"],
    )


def test_the_mapping_mirror_keeps_the_newest_version_in_any_order(clickhouse: Client) -> None:
    mapping(clickhouse, [("a", "p1", 1), ("a", "p3", 3), ("a", "p2", 2), ("b", "b", 0)])
    mapping(clickhouse, [("a", "p0", 0), ("b", "p5", 5)])  # older for a, newer for b
    mapping(clickhouse, [("b", "p4", 4), ("c", "c", 7)])
    found = clickhouse.query("SELECT id, profile_id, version FROM id_mapping_kv ORDER BY id").result_rows
    assert found == [("a", "p3", 3), ("b", "p5", 5), ("c", "c", 7)], found
    for row in clickhouse.query(MIRRORED_MAPPINGS).result_rows:
        assert row[1:3] == row[3:5], (
            f"source (profile, version) {row[1:3]} but mirror {row[3:5]} for {row[0]}"
        )


def test_the_state_mirror_keeps_the_newest_state_in_any_order(clickhouse: Client) -> None:
    columns = ["id", "traits", "trait_times", "group_id", "group_time", "audiences", "version", "updated_at"]

    def state(version: int, plan: str, group: str) -> list[object]:
        return ["ann", f'{{"plan":"{plan}"}}', "{}", group, AT if group else None, "{}", version, AT]

    clickhouse.insert("id_state", [state(2, "pro", "g1"), state(1, "free", "")], column_names=columns)
    clickhouse.insert("id_state", [state(0, "trial", "")], column_names=columns)
    found = clickhouse.query("SELECT traits, group_id, version FROM id_state_kv WHERE id = 'ann'").result_rows
    assert found == [('{"plan":"pro"}', "g1", 2)], found
    clickhouse.insert("id_state", [state(3, "team", "")], column_names=columns)
    found = clickhouse.query("SELECT traits, group_id, version FROM id_state_kv WHERE id = 'ann'").result_rows
    assert found == [('{"plan":"team"}', "", 3)], found


def members(client: Client, rows: list[tuple[str, list[str], int]], overflow: bool = False) -> None:
    client.insert(
        "profile_members",
        [[profile, ids, overflow, version, AT] for profile, ids, version in rows],
        column_names=["profile_id", "ids", "overflow", "version", "updated_at"],
    )


def test_the_members_mirror_keeps_the_newest_record_in_any_order(clickhouse: Client) -> None:
    members(clickhouse, [("ann", ["ann", "anon"], 2), ("ann", ["ann"], 1)])
    members(clickhouse, [("ann", ["ann"], 0), ("bob", ["bob", "old"], 1)])  # older for ann
    members(clickhouse, [("bob", [], 3)])  # bob merged away
    found = clickhouse.query("SELECT profile_id, ids, version FROM profile_members_kv ORDER BY 1").result_rows
    assert found == [("ann", ["ann", "anon"], 2), ("bob", [], 3)], found


def test_a_profiles_ids_are_the_graphs_record_verified_by_current_mappings(clickhouse: Client) -> None:
    from feedhouse.read.queries.profiles import members_of, resolve

    mapping(clickhouse, [("anon", "ann", 1), ("ann", "ann", 1), ("old", "bob", 1), ("bob", "bob", 1)])
    members(clickhouse, [("ann", ["ann", "anon"], 1), ("bob", ["bob", "old"], 1)])
    # old moves to ann: the graph's records for both profiles arrive before old's new mapping.
    members(clickhouse, [("ann", ["ann", "anon", "old"], 2), ("bob", ["bob"], 2)])
    assert members_of(clickhouse, ["anon", "bob"]) == {"ann": ["ann", "anon"], "bob": ["bob"]}
    mapping(clickhouse, [("old", "ann", 2)])
    assert members_of(clickhouse, ["anon", "old", "nobody"]) == {
        "ann": ["ann", "anon", "old"],
        "nobody": ["nobody"],
    }
    assert resolve(clickhouse, "old").ids == ("ann", "anon", "old")
    assert resolve(clickhouse, "bob").ids == ("bob",)


def test_a_profile_with_more_ids_than_a_record_holds_is_listed_from_the_mappings(clickhouse: Client) -> None:
    from feedhouse.read.queries.profiles import members_of, resolve

    mapping(clickhouse, [("bot", "bot", 1), *((f"device-{n}", "bot", 1) for n in range(3))])
    members(clickhouse, [("bot", [], 1)], overflow=True)
    expected = ("bot", "device-0", "device-1", "device-2")
    assert resolve(clickhouse, "device-1").ids == expected
    assert members_of(clickhouse, ["bot"]) == {"bot": list(expected)}


def test_the_last_seen_mirror_keeps_the_newest_time_whatever_arrives_late(clickhouse: Client) -> None:
    from feedhouse.read.queries.people import last_seen
    from tests.support.offline_pipeline import OfflinePipeline

    def flush(*calls: tuple[str, str, str]) -> None:
        pipeline = OfflinePipeline()
        for message, user, at in calls:
            pipeline.add(
                {"type": "track", "messageId": message, "userId": user, "event": "E", "timestamp": at}
            )
        pipeline.flush(clickhouse)

    flush(("m1", "ann", "2026-01-01T10:00:00Z"), ("m2", "ann", "2026-01-01T12:00:00Z"))
    flush(("m3", "ann", "2026-01-01T11:00:00Z"), ("m4", "bob", "1969-07-20T20:17:00Z"))  # late; pre-epoch
    flush(("m2", "ann", "2026-01-01T12:00:00Z"))  # a redelivered copy
    expected = {
        key: int(micros)
        for key, micros in clickhouse.query(
            "SELECT person_key, toUnixTimestamp64Micro(max(timestamp)) FROM events GROUP BY person_key"
        ).result_rows
    }
    assert expected["ann"] == 1_767_268_800_000_000, expected  # 12:00, the newest
    assert last_seen(clickhouse, ["ann", "bob", "nobody"]) == expected, "the mirror differs from events"
    flush(("m5", "ann", "2026-01-02T09:00:00Z"))
    assert last_seen(clickhouse, ["ann"]) == {"ann": 1_767_344_400_000_000}
