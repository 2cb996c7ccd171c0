"""The regulation executor on real ClickHouse (chDB) and a real broker: a deleted person vanishes
from every answer at once (read API and analyst views), their rows are physically gone after the
purge, and what it leaves behind keeps them from coming back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from feedhouse.audiences.definitions import AUDIENCE, TRAIT
from feedhouse.avro.codec import AvroCodec
from feedhouse.kafka import consumer_config
from feedhouse.privacy.deletions import DeletedIds
from feedhouse.privacy.executor import Executor, wait_for_mutations
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.regulations import Regulation, parse_request
from feedhouse.settings import Settings
from tests.conftest import ReadApi, wait_until
from tests.support.audiences import Harness

pytestmark = pytest.mark.integration
DAY = 86_400_000_000


def at(day: int, second: int = 0) -> str:
    return f"2026-03-{day:02d}T10:00:{second:02d}Z"


@pytest.fixture
def executor(settings: Settings, clickhouse: Client) -> Iterator[Executor]:
    log = RegulationLog(settings).start()
    assert log.table.wait_loaded(20)
    running = Executor(settings, clickhouse, log)
    stop = threading.Event()
    running.suppressions.start()
    running.deleted.start()
    assert running.suppressions.table.wait_loaded(20) and running.deleted.wait_loaded(20)
    yield running
    stop.set()
    running.join(5)
    log.stop()


def people(read_api: ReadApi, tag: str) -> tuple[list[str], list[str]]:
    ann = [f"ann-phone-{tag}", f"ann-old-{tag}", f"ann-{tag}"]
    bob = [f"bob-{tag}"]
    read_api.send(
        {"type": "page", "messageId": f"a1-{tag}", "anonymousId": ann[0], "name": "Home", "timestamp": at(1)},
        {
            "type": "identify",
            "messageId": f"a2-{tag}",
            "userId": ann[1],
            "anonymousId": ann[0],
            "traits": {"email": f"ann-{tag}@example.com", "plan": "pro"},
            "timestamp": at(1, 1),
        },
        {
            "type": "alias",
            "messageId": f"a3-{tag}",
            "previousId": ann[1],
            "userId": ann[2],
            "timestamp": at(1, 2),
        },
        {
            "type": "group",
            "messageId": f"a4-{tag}",
            "userId": ann[2],
            "groupId": f"acme-{tag}",
            "timestamp": at(1, 3),
        },
        {"type": "track", "messageId": f"a5-{tag}", "userId": ann[2], "event": "Paid", "timestamp": at(1, 4)},
        {
            "type": "identify",
            "messageId": f"b1-{tag}",
            "userId": bob[0],
            "traits": {"plan": "pro"},
            "timestamp": at(2),
        },
        {
            "type": "group",
            "messageId": f"b2-{tag}",
            "userId": bob[0],
            "groupId": f"acme-{tag}",
            "timestamp": at(2, 1),
        },
    )
    return ann, bob


def regulate(executor: Executor, kind: str, subjects: list[str]) -> Regulation:
    regulation = parse_request({"regulationType": kind, "subjectIds": subjects}, time.time_ns() // 1000)
    executor.regulations.save(regulation)
    executor.execute(regulation)
    done = executor.regulations.get(regulation.id)
    assert done is not None and done.status == "FINISHED", done
    return done


def scalar(client: Client, sql: str, **parameters: Any) -> Any:
    return client.query(sql, parameters=parameters).result_rows[0][0]


def test_a_deleted_person_vanishes_from_every_answer_and_then_from_disk(
    read_api: ReadApi, clickhouse: Client, executor: Executor, settings: Settings
) -> None:
    tag = uuid.uuid4().hex[:6]
    ann, bob = people(read_api, tag)
    assert read_api.get(f"/v1/profiles/{ann[0]}").json()["id"] == ann[2]

    assert set(ann) <= set(executor.person_ids([ann[1]])), "an aliased old id names the whole person"
    # An older record of another profile can still list an id that has left it (a moved device).
    earlier = time.time_ns() // 1000 - 60_000_000
    for version, listed in ((1, [bob[0], ann[0]]), (2, [bob[0]])):  # apart: an insert keeps its newest
        clickhouse.insert(
            "profile_members",
            [[bob[0], listed, False, version, earlier + version]],
            column_names=["profile_id", "ids", "overflow", "version", "updated_at"],
        )
    done = regulate(executor, "SUPPRESS_WITH_DELETE", [ann[1]])
    assert done.counts["events"] == 5 and done.counts["ids"] >= 3, done.counts

    for identifier in ann:
        assert read_api.get(f"/v1/profiles/{identifier}").status_code == 404, identifier
        assert read_api.get(f"/v1/profiles/{identifier}/timeline").status_code == 404, identifier
    feed = {
        event["messageId"] for event in read_api.get("/v1/feed", hidden="true", limit=500).json()["events"]
    }
    assert not {m for m in feed if m.startswith("a")} & {f"a{n}-{tag}" for n in range(1, 6)}
    assert {f"b1-{tag}", f"b2-{tag}"} <= feed, "the other person is untouched"
    assert read_api.get("/v1/profiles", **{"trait.email": f"ann-{tag}@example.com"}).json()["total"] == 0
    assert read_api.get(f"/v1/groups/acme-{tag}").json()["members"] == [bob[0]]
    # The analyst views (docs/schema.md) see nothing of her either.
    ids = {"ids": ann}
    assert (
        scalar(
            clickhouse, "SELECT count() FROM events_resolved WHERE person_key IN {ids:Array(String)}", **ids
        )
        == 0
    )
    assert (
        scalar(clickhouse, "SELECT count() FROM profiles WHERE hasAny(ids, {ids:Array(String)})", **ids) == 0
    )
    assert (
        scalar(clickhouse, "SELECT count() FROM id_mapping_current WHERE id IN {ids:Array(String)}", **ids)
        == 0
    )
    assert (
        scalar(clickhouse, "SELECT count() FROM id_state_current WHERE id IN {ids:Array(String)}", **ids) == 0
    )

    # The people list reads person_recency with pending deletes applied on the fly.
    recency = (
        "SELECT count() FROM person_recency WHERE person_key IN {ids:Array(String)}"
        " SETTINGS apply_mutations_on_fly = 1"
    )
    assert scalar(clickhouse, recency, **ids) == 0
    assert scalar(clickhouse, recency, ids=bob) == 1, "the other person is still listed"
    seen = "SELECT count() FROM person_seen_kv WHERE person_key IN {ids:Array(String)}"
    assert scalar(clickhouse, seen, **ids) == 0, "the last-seen mirror still has the deleted ids"
    assert scalar(clickhouse, seen, ids=bob) == 1, "the other person's last seen is gone too"
    members = clickhouse.query(
        "SELECT profile_id, ids FROM profile_members"
        " WHERE profile_id IN {ids:Array(String)} OR arrayExists(i -> i IN {ids:Array(String)}, ids)"
        " OR profile_id = {bob:String} ORDER BY version",
        parameters={**ids, "bob": bob[0]},
    ).result_rows
    assert [(p, list(i)) for p, i in members if p == bob[0] and set(i) & set(ann)] == [], members
    assert (bob[0], [bob[0]]) in [(p, list(i)) for p, i in members], f"bob's newest record went: {members}"
    assert {p for p, _ in members} == {bob[0]}, f"expected only bob's records left, saw {members}"

    # Masked (chDB writes the deletes as patch parts, applied by every read), not yet gone from disk...
    assert executor.patch_parts()
    raw = (
        "SELECT count() FROM events WHERE person_key IN {ids:Array(String)}"
        " SETTINGS apply_deleted_mask = 0, apply_patch_parts = 0"
    )
    assert scalar(clickhouse, raw, **ids) == 5
    # ...until the purge rewrites the parts that hold her rows.
    assert executor.purge_if_due(force=True) >= 3
    assert scalar(clickhouse, raw, **ids) == 0
    purged = (
        "SELECT countIf(purged IS NOT NULL) FROM (SELECT argMax(purged_at, version) AS purged"
        " FROM deleted_ids WHERE id IN {ids:Array(String)} GROUP BY id)"
    )
    assert scalar(clickhouse, purged, **ids) == 3
    # What keeps her out from now on: the suppression list and the deleted ids.
    assert set(ann) <= executor.suppressions.ids
    follower = DeletedIds(settings).start()
    try:
        assert follower.wait_loaded(20)
        assert all(follower.entry(identifier) for identifier in ann)
        assert follower.drops_event(ann[:1], time.time_ns() // 1000, time.time_ns() // 1000)
    finally:
        follower.stop()
    # The identity agents were told to forget every id (so a restarted worker cannot resurrect her).
    assert forgotten(settings) >= set(ann)
    # The audit trail: the request, its timings and counts.
    audit = clickhouse.query(
        "SELECT argMax(status, version), argMax(counts, version) FROM regulations WHERE id = {id:String}",
        parameters={"id": done.id},
    ).result_rows[0]
    assert audit[0] == "FINISHED" and audit[1]["events"] == 5


def forgotten(settings: Settings) -> set[str]:
    codec = AvroCodec("identity_batch")
    topic = settings.topic("identity-graph")
    consumer = Consumer(consumer_config(settings, f"test-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: set[str] = set()
    try:
        idle = 0
        while idle < 2:
            messages = consumer.consume(1000, 1.0)
            idle = 0 if messages else idle + 1
            for message in messages:
                if message.error() is None:
                    found |= {
                        c["id"]
                        for c in codec.decode(message.value() or b"")["commands"]
                        if c["kind"] == "forget"
                    }
    finally:
        consumer.close()
    return found


def test_delete_only_keeps_what_the_person_does_afterwards(
    read_api: ReadApi, clickhouse: Client, executor: Executor
) -> None:
    tag = uuid.uuid4().hex[:6]
    ann, bob = people(read_api, tag)
    done = regulate(executor, "DELETE_ONLY", [ann[2]])
    assert not executor.suppressions.suppressed(ann[2], None), "DELETE_ONLY does not suppress"
    assert read_api.get(f"/v1/profiles/{ann[2]}").status_code == 404
    # Genuinely new: the same user id, later, starts a new profile with nothing of the old one.
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    read_api.pipeline.offset += 1000
    read_api.send(
        {"type": "track", "messageId": f"new-{tag}", "userId": ann[2], "event": "Back", "timestamp": later}
    )
    profile = read_api.get(f"/v1/profiles/{ann[2]}").json()
    assert profile["eventCount"] == 1 and profile["traits"] == {} and profile["group"] is None, profile
    assert [e["messageId"] for e in read_api.get(f"/v1/profiles/{ann[2]}/timeline").json()["events"]] == [
        f"new-{tag}"
    ]
    assert done.counts["events"] == 5
    assert read_api.get(f"/v1/profiles/{bob[0]}").status_code == 200


def test_the_catch_up_pass_reads_only_the_parts_written_since_the_first(
    read_api: ReadApi, clickhouse: Client, executor: Executor
) -> None:
    """What a sink inserted after the first pass (it had not learnt of the deletion yet) is
    masked by the next pass, which looks at the parts written since and at nothing else."""
    tag = uuid.uuid4().hex[:6]
    early, late = f"early-{tag}", f"late-{tag}"

    def track(message_id: str, user: str) -> dict[str, object]:
        return {"type": "track", "messageId": message_id, "userId": user, "event": "Paid", "timestamp": at(3)}

    read_api.send(track(f"e1-{tag}", early))
    before = executor.data_parts()
    assert before is not None and before["events"] > 0, before
    read_api.send(track(f"e2-{tag}", early), track(f"l1-{tag}", late))
    executor.mask([early, late], time.time_ns() // 1000, True, since=before)
    timeline = read_api.get(f"/v1/profiles/{early}/timeline").json()["events"]
    assert [e["messageId"] for e in timeline] == [f"e1-{tag}"], "only rows of newer parts are masked"
    assert read_api.get(f"/v1/profiles/{late}/timeline").status_code == 404
    # The last-seen mirror is filled by inserts into events, which has newer parts: masked too.
    seen = "SELECT count() FROM person_seen_kv WHERE person_key = {id:String}"
    assert scalar(clickhouse, seen, id=late) == 0, "the mirror still has the late id's last seen"


def test_applied_patch_parts_are_retired_within_seconds(
    read_api: ReadApi, clickhouse: Client, executor: Executor
) -> None:
    """Active patch parts slow every read of their table until its cleanup task retires them,
    after ``APPLY PATCHES``; migration 0017 has the task come round every second or two
    (ClickHouse's default pace is 30 s, backing off to 300 s).

    A table altered in this process keeps its old pace until its next pass (up to 40 s after the
    session's migrations), hence the long wait; a process that opens the tables gets the new
    pace at once (bench.privacy measures it)."""
    tag = uuid.uuid4().hex[:6]
    user = f"pat-{tag}"
    event: dict[str, object] = {
        "type": "track",
        "messageId": f"p1-{tag}",
        "userId": user,
        "event": "Paid",
        "timestamp": at(4),
    }
    read_api.send(event)
    regulate(executor, "DELETE_ONLY", [user])
    wait_for_mutations(clickhouse)  # the background APPLY PATCHES the executor queued
    active = (
        "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'events'"
        " AND active AND startsWith(name, 'patch-')"
    )
    settings = (
        "SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = 'events'"
    )
    assert "max_cleanup_delay_period = 2" in scalar(clickhouse, settings)
    wait_until(lambda: scalar(clickhouse, active) == 0, timeout=60, what="no active patch part in events")
    raw = "SELECT count() FROM events WHERE user_id = {id:String} SETTINGS apply_patch_parts = 0"
    assert scalar(clickhouse, raw, id=user) == 0, "the mask lives in the part itself now"


def test_deletion_removes_computed_values_membership_history_and_queued_messages(
    read_api: ReadApi, clickhouse: Client, executor: Executor
) -> None:
    tag = uuid.uuid4().hex[:6]
    ann, bob = people(read_api, tag)
    harness = Harness(clickhouse, time.time_ns() // 1000)
    harness.define(TRAIT, {"key": f"paid_{tag}", "compute": {"op": "count", "event": "Paid"}})
    harness.define(AUDIENCE, {"key": f"pros_{tag}", "when": {"trait": "plan", "op": "eq", "value": "pro"}})
    harness.backfill_all()
    assert harness.values(f"pros_{tag}") == {ann[2]: True, bob[0]: True}
    ids = {"ids": ann}
    person_rows = (
        "SELECT count() FROM {table:Identifier} WHERE profile_id IN {ids:Array(String)}"
        " OR user_id IN {ids:Array(String)} OR anonymous_id IN {ids:Array(String)}"
    )
    tables = ("computed_changes", "computed_current", "computed_by_profile")
    before = {table: scalar(clickhouse, person_rows, table=table, **ids) for table in tables}
    assert all(before.values()), before
    # No destination has received any of it yet: her changes are queued messages too.
    newest = scalar(clickhouse, "SELECT max(seq) FROM computed_changes")
    assert newest >= 3

    done = regulate(executor, "DELETE_ONLY", [ann[0]])
    assert done.counts["computed_changes"] == before["computed_changes"], done.counts
    after = {table: scalar(clickhouse, person_rows, table=table, **ids) for table in tables}
    assert after == dict.fromkeys(tables, 0), f"rows of the deleted person left: {after}"
    assert harness.values(f"pros_{tag}") == {bob[0]: True}
    members = read_api.get(f"/v1/audiences/pros_{tag}/members", computedBy="feedhouse").json()
    assert (members["members"], members["size"]) == ([bob[0]], 1), members
    # The log's numbering goes on past the removed changes (a sender never sees a seq twice).
    floor = "SELECT max(value) FROM evaluator_state WHERE name = 'seq_floor'"
    assert scalar(clickhouse, floor) == newest
    harness.evaluator.forget_cached()
    assert harness.evaluator.log.next_seq() == newest + 1


def test_the_lookup_tables_are_masked_after_finished_even_across_a_restart(
    read_api: ReadApi,
    clickhouse: Client,
    executor: Executor,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = uuid.uuid4().hex[:6]
    ann, bob = people(read_api, tag)
    lookups = {
        table: f"SELECT count() FROM {table} WHERE person_key IN {{ids:Array(String)}}"
        for table in ("events_by_person_time", "events_by_time")
    }
    # The process stops between FINISHED and the lookup masks (the queue is in memory).
    monkeypatch.setattr(executor, "mask_lookups", lambda: None)
    regulate(executor, "SUPPRESS_WITH_DELETE", [ann[2]])
    assert {table: scalar(clickhouse, sql, ids=ann) for table, sql in lookups.items()} == {
        "events_by_person_time": 5,
        "events_by_time": 5,
    }, "the lookup masks were meant to be skipped here"
    # Nothing of her shows meanwhile: timelines and the feed show a lookup row only with its
    # winning copy in events, masked before FINISHED.
    assert read_api.get(f"/v1/profiles/{ann[0]}/timeline").status_code == 404
    feed = {e["messageId"] for e in read_api.get("/v1/feed", hidden="true", limit=500).json()["events"]}
    assert not feed & {f"a{n}-{tag}" for n in range(1, 6)} and f"b1-{tag}" in feed, feed
    # A restarted executor queues the lookup masks of every deletion not yet purged.
    restarted = Executor(settings, clickhouse, executor.regulations)
    restarted.requeue_lookups()
    restarted.mask_lookups()
    assert {table: scalar(clickhouse, sql, ids=ann) for table, sql in lookups.items()} == {
        "events_by_person_time": 0,
        "events_by_time": 0,
    }
    assert scalar(clickhouse, lookups["events_by_time"], ids=bob) == 2, "the other person is untouched"
