"""A synchronous evaluator on a test's chDB, for tests and benchmarks that state definitions and
events and look at the values and changes (no Kafka, no threads; the clock is the caller's).

Definitions are saved through the store as the admin API saves them; ``backfill_all`` runs each
pending backfill the way the runner's threads do (refresh, backfill query, apply), and
``touch`` plays what the Kafka stage does for a batch: evaluate the profiles of some ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.audiences.definitions import AUDIENCE, TRAIT, parse_definition
from feedhouse.audiences.evaluator import Evaluator
from feedhouse.audiences.store import Store, StoredDefinition, next_version, stored_for
from feedhouse.read.sql import rows
from feedhouse.retry import sleep_wait

CURRENT_SQL = """
SELECT profile_id, argMax((member, value), seq)
FROM computed_current
WHERE definition_key = {key:String}
GROUP BY profile_id
"""
CHANGES_SQL = """
SELECT seq, definition_key, profile_id, member, value, change_index, cause, user_id, anonymous_id, message_id
FROM computed_changes ORDER BY seq
"""


def ids_of(calls: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every id a batch of Segment calls mentions (what the Kafka stage would see as touched)."""
    found: set[str] = set()
    for call in calls:
        for name in ("userId", "anonymousId", "previousId"):
            value = call.get(name)
            if isinstance(value, str) and value:
                found.add(value)
    return found


def stage_view(calls: Iterable[Mapping[str, Any]]) -> tuple[set[str], dict[str, set[tuple[str, str]]]]:
    """(ids evaluated whole, event-touched ids with their (type, event name)) of a batch, as the
    Kafka stage sees it, conservatively: a track, page or screen call naming one id is an event
    of that person alone; any other call (identify, alias, group, or an event linking two ids)
    changes identity, so its ids are evaluated whole."""
    whole: set[str] = set()
    seen: dict[str, set[tuple[str, str]]] = {}
    for call in calls:
        named = ids_of([call])
        kind = str(call.get("type") or "")
        if kind in ("track", "page", "screen") and len(named) == 1:
            seen.setdefault(next(iter(named)), set()).add((kind, str(call.get("event") or "")))
        else:
            whole |= named
    return whole, seen


class Harness:
    def __init__(self, client: Client, now: int) -> None:
        self.client = client
        self.now = now
        self.store = Store(client)
        self.evaluator = Evaluator(client, clock=lambda: self.now)

    def define(self, kind: str, body: dict[str, Any]) -> StoredDefinition:
        definitions = self.store.definitions()
        previous = definitions.by_key.get(str(body.get("key")))
        definition = parse_definition(
            kind, body, computed_traits=definitions.keys(TRAIT), audiences=definitions.keys(AUDIENCE)
        )
        stored = stored_for(definition, previous)
        self.store.save_definition(stored)
        return stored

    def delete(self, key: str) -> None:
        stored = self.store.definitions().by_key[key]
        self.store.save_definition(replace(stored, version=next_version(stored.version)), deleted=True)

    def backfill_all(self) -> None:
        """Refresh, then run and apply every backfill that refresh scheduled."""
        self.evaluator.refresh(sleep_wait)
        jobs = []
        while not self.evaluator.backfills.empty():
            job = self.evaluator.backfills.get()
            if not job.cancelled:
                jobs.append(job)
        for start in range(0, len(jobs), 3):  # in groups, as the runner does (one query each)
            self.evaluator.run_backfills(jobs[start : start + 3])
        self.evaluator.apply_finished(sleep_wait)

    def touch(self, ids: Iterable[str], moved: Iterable[str] = ()) -> int:
        return self.evaluator.evaluate_ids(ids, moved, "events", sleep_wait)

    def touch_as_stage(self, calls: Iterable[Mapping[str, Any]]) -> int:
        """Evaluate a stored batch as the Kafka stage does (:func:`stage_view`): profiles touched
        by events alone only for what those events can move."""
        whole, seen = stage_view(calls)
        return self.evaluator.evaluate_ids(whole, whole, "events", sleep_wait, seen=seen)

    def expire(self) -> int:
        return self.evaluator.expire(sleep_wait)

    def values(self, key: str) -> dict[str, Any]:
        """profile -> True (audience member) or the computed trait's JSON text, for present values."""
        found: dict[str, Any] = {}
        for profile, (member, value) in rows(self.client, CURRENT_SQL, key=key):
            if member:
                found[str(profile)] = True
            elif value:
                found[str(profile)] = str(value)
        return found

    def changes(self) -> list[dict[str, Any]]:
        names = (
            "seq",
            "key",
            "profile",
            "member",
            "value",
            "index",
            "cause",
            "user_id",
            "anonymous_id",
            "message_id",
        )
        return [dict(zip(names, row, strict=True)) for row in rows(self.client, CHANGES_SQL)]
