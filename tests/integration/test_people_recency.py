"""The people list's recency table (migrations 0009, 0021): an id mapped into a profile seen more
recently gets a tombstone, so the walk skips it in SQL once parts merge; the list is the same."""

from __future__ import annotations

import uuid

from clickhouse_connect.driver.client import Client

from feedhouse.read.queries.people import recent_profiles
from tests.conftest import wait_until
from tests.support.offline_pipeline import OfflinePipeline

LIVE = "SELECT person_key, deleted FROM person_recency FINAL ORDER BY person_key"


def listed(clickhouse: Client) -> list[tuple[str, int, tuple[str, ...]]]:
    found, _ = recent_profiles(clickhouse, None, 10)
    return [(p.profile_id, p.last_seen, p.ids) for p in found]


def test_an_id_merged_into_a_more_recent_profile_is_tombstoned_and_comes_back_with_new_events(
    clickhouse: Client,
) -> None:
    pipeline = OfflinePipeline()
    pipeline.add(
        {"type": "page", "messageId": "p1", "anonymousId": "anon-1", "timestamp": "2026-01-01T10:00:00Z"}
    )
    pipeline.flush(clickhouse)
    # She signs in: anon-1 joins ann, whose own id was seen later (the identify itself).
    pipeline.add(
        {
            "type": "identify",
            "messageId": "i1",
            "userId": "ann",
            "anonymousId": "anon-1",
            "timestamp": "2026-01-01T11:00:00Z",
        }
    )
    # Bob signs in first and browses anonymously afterwards: his anonymous id is his newest.
    pipeline.add(
        {
            "type": "identify",
            "messageId": "i2",
            "userId": "bob",
            "anonymousId": "anon-2",
            "timestamp": "2026-01-01T09:00:00Z",
        }
    )
    pipeline.add(
        {"type": "page", "messageId": "p2", "anonymousId": "anon-2", "timestamp": "2026-01-01T09:30:00Z"}
    )
    pipeline.flush(clickhouse)
    before = listed(clickhouse)
    clickhouse.command("OPTIMIZE TABLE person_recency FINAL")
    # anon-1 by the view on id_mapping; bob's own row by the walk (anon-2 is newer).
    assert clickhouse.query(LIVE).result_rows == [("ann", 0), ("anon-1", 1), ("anon-2", 0), ("bob", 1)]
    at_11, at_0930 = 1_767_265_200_000_000, 1_767_259_800_000_000
    assert (
        listed(clickhouse)
        == before
        == [
            ("ann", at_11, ("ann", "anon-1")),
            ("bob", at_0930, ("anon-2", "bob")),
        ]
    ), before
    # anon-1 browses again, signed out: its new row is live, and the profile is listed there.
    pipeline.add(
        {"type": "page", "messageId": "p3", "anonymousId": "anon-1", "timestamp": "2026-01-01T12:00:00Z"}
    )
    pipeline.flush(clickhouse)
    clickhouse.command("OPTIMIZE TABLE person_recency FINAL")
    assert ("anon-1", 0) in clickhouse.query(LIVE).result_rows
    assert listed(clickhouse)[0] == ("ann", 1_767_268_800_000_000, ("ann", "anon-1"))


def test_the_walk_tombstones_an_id_whose_profile_was_seen_later_than_its_mapping(
    clickhouse: Client,
) -> None:
    """The view on id_mapping decides when the mapping arrives: an id that was its profile's
    newest then, but no longer, is tombstoned by the first walk that finds it superseded."""
    tag = uuid.uuid4().hex[:6]
    anon, user = f"anon-{tag}", f"dee-{tag}"
    pipeline = OfflinePipeline()
    pipeline.add(
        {
            "type": "identify",
            "messageId": f"i-{tag}",
            "userId": user,
            "anonymousId": anon,
            "timestamp": "2026-01-02T10:00:00Z",
        }
    )
    # Still browsing signed out after the identify: at the mapping, anon is the newest id.
    pipeline.add(
        {"type": "page", "messageId": f"p-{tag}", "anonymousId": anon, "timestamp": "2026-01-02T10:30:00Z"}
    )
    pipeline.flush(clickhouse)
    pipeline.add(
        {
            "type": "track",
            "messageId": f"t-{tag}",
            "userId": user,
            "event": "E",
            "timestamp": "2026-01-02T12:00:00Z",
        }
    )
    pipeline.flush(clickhouse)
    live = "SELECT deleted FROM person_recency FINAL WHERE person_key = {key:String}"
    clickhouse.command("OPTIMIZE TABLE person_recency FINAL")
    assert clickhouse.query(live, parameters={"key": anon}).result_rows == [(0,)], "no tombstone yet"
    first = listed(clickhouse)
    assert [p[0] for p in first] == [user], first
    clickhouse.command("OPTIMIZE TABLE person_recency FINAL")
    assert clickhouse.query(live, parameters={"key": anon}).result_rows == [(1,)], "the walk buried it"
    assert listed(clickhouse) == first, "tombstones change what a walk reads, never what it lists"
    scanned = clickhouse.query(
        "SELECT person_key FROM person_recency WHERE deleted = 0 AND person_key IN {keys:Array(String)}"
        " SETTINGS apply_mutations_on_fly = 1",
        parameters={"keys": [anon, user]},
    ).result_rows
    assert scanned == [(user,)], f"expected only {user} left to scan, saw {scanned}"


def test_old_parts_are_merged_whole_so_superseded_rows_go(clickhouse: Client) -> None:
    """Migration 0023: parts past an age are merged whatever their sizes (here the age is
    lowered to a second, the migration's is five minutes), leaving one row per person."""
    ddl = clickhouse.query(
        "SELECT create_table_query FROM system.tables"
        " WHERE database = currentDatabase() AND name = 'person_recency'"
    ).result_rows[0][0]
    assert "min_age_to_force_merge_seconds = 300" in ddl, ddl
    clickhouse.command("SYSTEM STOP MERGES person_recency")
    pipeline = OfflinePipeline()
    for hour in (10, 11, 12):  # three inserts, three parts, three rows of one person
        pipeline.add(
            {
                "type": "track",
                "messageId": f"t{hour}",
                "userId": "cy",
                "event": "E",
                "timestamp": f"2026-01-01T{hour}:00:00Z",
            }
        )
        pipeline.flush(clickhouse)
    raw = "SELECT count() FROM person_recency WHERE person_key = 'cy'"
    assert clickhouse.query(raw).result_rows[0][0] == 3
    clickhouse.command("ALTER TABLE person_recency MODIFY SETTING min_age_to_force_merge_seconds = 1")
    clickhouse.command("SYSTEM START MERGES person_recency")
    wait_until(
        lambda: clickhouse.query(raw).result_rows[0][0] == 1, timeout=60, what="person_recency merged whole"
    )
