"""Carries out regulations: suppress, delete (masked at once, purged within the bound), lift.

Runs beside the sink (the process that writes ClickHouse: ``feedhouse dev`` or ``feedhouse
sink``), on a thread. For each new regulation, in order:

1. ``RUNNING``; the subjects are resolved to *people*: every id of each subject's profile
   (one query for all of them);
2. suppression: those ids go on the suppression list every gateway follows (``UNSUPPRESS``
   takes them off);
3. deletion: the ids are recorded in the ``deletions`` topic (the sink and the identity router
   stop writing anything of them from then on) and in ClickHouse's ``deleted_ids`` (every
   reader masks them from then on); the identity agents are told to forget them (changelog
   tombstones, so a restarted worker does not resurrect them); what is about to be removed is
   counted;
4. ``FINISHED`` with the counts, or ``FAILED`` with the reason.

Rows are masked at once with ClickHouse's lightweight ``DELETE FROM`` (every reader, the analyst
views included, stops seeing them; the rows stay in their parts), and again a few seconds later
for what was in flight. Physically they go with ``ALTER TABLE ... APPLY DELETED MASK``, which
rewrites only the parts holding masked rows, run once the oldest unpurged deletion is half of
``FEEDHOUSE_PURGE_WITHIN_SECONDS`` old, for all pending deletions together (one rewrite per
table per batch); ``purged_at`` records when each id's rows were gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaException, Producer

from feedhouse.audiences.queries import KEEP_SEQ_FLOOR_SQL
from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse.cluster import local_statement
from feedhouse.kafka import producer_config
from feedhouse.privacy.deletions import DeletedIds
from feedhouse.privacy.log import RegulationLog
from feedhouse.privacy.regulations import Regulation
from feedhouse.privacy.suppressions import SuppressionList
from feedhouse.read.queries.profiles import MEMBERS_OF
from feedhouse.read.sql import compose, rows
from feedhouse.settings import Settings
from feedhouse.streams.graph import FORGET
from feedhouse.streams.router import COMMANDS, GRAPH, partition_for

log = logging.getLogger(__name__)

# Every id of the profiles the subjects belong to now (a subject never mapped is its own).
PERSON_IDS_SQL = compose(
    """
WITH
    (
        SELECT groupUniqArray(if(mapping.profile_id = '', subject.id, mapping.profile_id))
        FROM (SELECT arrayJoin({subjects:Array(String)}) AS id) AS subject
        LEFT JOIN
        (
            SELECT id, argMax(profile_id, version) AS profile_id
            FROM id_mapping WHERE id IN {subjects:Array(String)} GROUP BY id
        ) AS mapping ON mapping.id = subject.id
    ) AS profiles,
$members
SELECT arrayDistinct(arrayConcat(members.1, {subjects:Array(String)}))
""",
    members=compose(MEMBERS_OF, profiles="profiles"),
)

COUNT_SQL = """
SELECT
    (
        SELECT count() FROM
        (SELECT 1 FROM events WHERE person_key IN {ids:Array(String)} GROUP BY person_key, message_id)
    ),
    (SELECT count() FROM id_state WHERE id IN {ids:Array(String)}),
    (SELECT uniqExact(id) FROM id_mapping WHERE id IN {ids:Array(String)})
"""
COUNT_COMPUTED_SQL = """
SELECT count() FROM computed_changes
WHERE profile_id IN {ids:Array(String)} OR user_id IN {ids:Array(String)}
    OR anonymous_id IN {ids:Array(String)}
"""

PENDING_SQL = """
SELECT id, toUnixTimestamp64Micro(current.1), current.2, current.4
FROM
(
    SELECT id, argMax((deleted_at, forever, purged_at, regulation_id), version) AS current
    FROM deleted_ids
    GROUP BY id
)
WHERE current.3 IS NULL
"""

_MAPPED = "(id IN {ids:Array(String)} OR profile_id IN {ids:Array(String)}) AND updated_at <= {at}"
_ID_STATE = "id IN {ids:Array(String)} AND updated_at <= {at}"
_COMPUTED = (
    "(profile_id IN {ids:Array(String)} OR user_id IN {ids:Array(String)}"
    " OR anonymous_id IN {ids:Array(String)}) AND ({forever:UInt8} = 1 OR changed_at <= {at})"
)
_EVENT_ROWS = (
    "person_key IN {ids:Array(String)} AND ({forever:UInt8} = 1 OR timestamp <= {at} OR received_at <= {at})"
)

# Every table holding a person's rows, with the condition naming a deleted person's rows and
# how they are removed. ``{at}`` is the deletion time: under DELETE_ONLY only what happened
# before it goes, so a person who came back keeps their new rows.
#
# * "lightweight": ``DELETE FROM`` masks the rows at once (every reader, the analyst views
#   included, stops seeing them); the purge then rewrites the masked parts (``APPLY DELETED MASK``).
# * "mutation": ``ALTER TABLE ... DELETE`` rewrites the parts at once: for person_recency, whose
#   projection a lightweight delete would leave stale (it is one small row per person).
MASKS: tuple[tuple[str, str, str], ...] = (
    ("events", _EVENT_ROWS, "lightweight"),
    ("events_by_person_time", _EVENT_ROWS, "lightweight"),
    ("events_by_time", _EVENT_ROWS, "lightweight"),
    (
        "person_recency",
        "person_key IN {ids:Array(String)} AND ({forever:UInt8} = 1 OR last_seen <= {at})",
        "mutation",
    ),
    (
        "rejected_events",
        "(JSONExtractString(payload, 'userId') IN {ids:Array(String)}"
        " OR JSONExtractString(payload, 'anonymousId') IN {ids:Array(String)})"
        " AND ({forever:UInt8} = 1 OR received_at <= {at})",
        "lightweight",
    ),
    ("id_mapping", _MAPPED, "lightweight"),
    ("id_mapping_by_profile", _MAPPED, "lightweight"),
    ("id_state", _ID_STATE, "lightweight"),
    ("id_state_by_group", _ID_STATE, "lightweight"),
    ("id_state_by_trait", _ID_STATE, "lightweight"),
    ("id_state_by_audience", _ID_STATE, "lightweight"),
    # Audiences and computed traits: values, membership history, and the messages still queued
    # for destinations (a sender delivers the log's rows after its cursor: masked ones never go).
    ("computed_changes", _COMPUTED, "lightweight"),
    ("computed_current", _COMPUTED, "lightweight"),
    ("computed_by_profile", _COMPUTED, "lightweight"),
)
# Rows derived from what was deleted can still be in flight when the deletion starts (a sink
# batch, a command an identity agent is applying): the masks run again this long after.
SECOND_PASS_SECONDS = 10.0
AT = "fromUnixTimestamp64Micro({at_micros:Int64}, 'UTC')"


def now_micros() -> int:
    return time.time_ns() // 1000


class Executor:
    """Runs every new regulation, then purges deleted rows when due. One per deployment."""

    def __init__(self, settings: Settings, client: Client, regulations: RegulationLog) -> None:
        self.settings = settings
        self.client = client
        self.regulations = regulations
        self.suppressions = SuppressionList(settings)
        self.deleted = DeletedIds(settings)
        self.batches = AvroCodec("identity_batch")
        self.producer = Producer(producer_config(settings))
        self.last_error = ""
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._second_passes: list[tuple[float, list[str], int, bool]] = []

    def start(self, stop: threading.Event) -> Executor:
        self.suppressions.start()
        self.deleted.start()
        self._thread = threading.Thread(target=self._run, args=(stop,), name="feedhouse-privacy", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        self.suppressions.stop()
        self.deleted.stop()

    def health(self) -> tuple[bool, str]:
        if self._thread is None or not self._thread.is_alive():
            return False, f"regulation executor stopped: {self.last_error}"
        return True, "running"

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                for regulation in reversed(self.regulations.all()):  # oldest first
                    if regulation.status in ("INITIALIZED", "RUNNING"):
                        self.execute(regulation)
                self.second_passes()
                self.purge_if_due()
            except Exception as exc:  # keep running: the next pass retries
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("regulation executor pass failed")
                stop.wait(2.0)

    # ---- one regulation -------------------------------------------------------------------

    def execute(self, regulation: Regulation) -> None:
        """Carry out ``regulation`` (again, if a previous run died half-way: every step is idempotent)."""
        regulation.status, regulation.started_at = "RUNNING", regulation.started_at or now_micros()
        self._save(regulation)
        try:
            ids = self.person_ids(regulation.subject_ids)
            counts: dict[str, int] = {"ids": len(ids)}
            if regulation.suppresses:
                self.suppressions.suppress(ids, regulation.id)
                counts["suppressed_ids"] = len(ids)
            if regulation.unsuppresses:
                lifted = [i for i in {*ids, *regulation.subject_ids} if i in self.suppressions.ids]
                self.suppressions.lift(lifted)
                counts["unsuppressed_ids"] = len(lifted)
            if regulation.deletes:
                counts.update(self.delete(ids, regulation))
            regulation.counts = counts
            regulation.status = "FINISHED"
        except Exception as exc:
            log.exception("regulation failed", extra={"regulation": regulation.id})
            regulation.status, regulation.reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
        regulation.finished_at = now_micros()
        self._save(regulation)

    def person_ids(self, subjects: Sequence[str]) -> list[str]:
        found: set[str] = set()
        for start in range(0, len(subjects), 1000):
            chunk = list(subjects[start : start + 1000])
            found |= {str(i) for i in rows(self.client, PERSON_IDS_SQL, subjects=chunk)[0][0]}
        return sorted(found)

    def delete(self, ids: list[str], regulation: Regulation) -> dict[str, int]:
        at = now_micros()
        events, states, mapped = rows(self.client, COUNT_SQL, ids=ids)[0]
        forever = regulation.suppresses
        # From here on: the sink and the router write nothing of them...
        self.deleted.record(ids, regulation.id, at, forever)
        # ...every reader masks them...
        self.client.insert(
            "deleted_ids",
            [[i, regulation.id, at, 1 if forever else 0, None, at] for i in ids],
            column_names=["id", "regulation_id", "deleted_at", "forever", "purged_at", "version"],
        )
        tables = self._existing_tables()
        changes = 0
        if "computed_changes" in tables:
            changes = int(rows(self.client, COUNT_COMPUTED_SQL, ids=ids)[0][0])
        if "evaluator_state" in tables:
            self.client.command(KEEP_SEQ_FLOOR_SQL)  # the change log's numbering never goes back
        # ...the identity agents forget them...
        self.forget(ids, regulation.id, at)
        # ...and their rows disappear from every answer now, and again once what was in flight
        # has landed.
        self.mask(ids, at, forever)
        with self._lock:
            self._second_passes.append((time.monotonic() + SECOND_PASS_SECONDS, ids, at, forever))
        return {
            "events": int(events),
            "id_states": int(states),
            "mapped_ids": int(mapped),
            "computed_changes": changes,
        }

    def mask(self, ids: list[str], at: int, forever: bool) -> None:
        """Remove every row of ``ids`` from every answer (idempotent)."""
        tables = self._existing_tables()
        for table, condition, how in MASKS:
            if table not in tables:
                continue
            where = condition.replace("{at}", AT)
            if how == "lightweight":
                statement, settings = f"DELETE FROM {table} WHERE {where}", {"lightweight_deletes_sync": 2}
            else:
                statement, settings = f"ALTER TABLE {table} DELETE WHERE {where}", {"mutations_sync": 2}
            self.client.command(
                self._on_shards(statement),
                parameters={"ids": ids, "at_micros": at, "forever": 1 if forever else 0},
                settings=settings,
            )

    def _on_shards(self, statement: str) -> str:
        """In cluster mode, deletes and mutations address every shard's replicated tables."""
        cluster = self.settings.clickhouse_cluster
        return local_statement(statement, cluster) if cluster else statement

    def _existing_tables(self) -> set[str]:
        statement = "SELECT name FROM system.tables WHERE database = currentDatabase()"
        return {str(name) for (name,) in rows(self.client, statement)}

    def second_passes(self, force: bool = False) -> None:
        """Mask again what was deleted a while ago: rows in flight then have landed since.

        Under DELETE_ONLY the cut-off moves by the delay: identity rows written meanwhile were
        derived from what was deleted.
        """
        now = time.monotonic()
        with self._lock:
            due = [item for item in self._second_passes if force or item[0] <= now]
            self._second_passes = [item for item in self._second_passes if item not in due]
        for _, ids, at, forever in due:
            self.mask(ids, at if forever else at + int(SECOND_PASS_SECONDS * 1e6), forever)

    def forget(self, ids: Iterable[str], regulation_id: str, at: int) -> None:
        commands: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for identifier in ids:
            record = {
                "kind": FORGET,
                "id": identifier,
                "target": None,
                "traits": None,
                "audience": None,
                "timestamp": at,
                "messageId": f"forget-{regulation_id}",
            }
            commands.setdefault(
                (COMMANDS, partition_for(identifier, self.settings.events_partitions)), []
            ).append(record)
            commands.setdefault((GRAPH, 0), []).append(record)
        for (topic, partition), batch in commands.items():
            for start in range(0, len(batch), 5000):
                value = self.batches.encode({"commands": batch[start : start + 5000]})
                self.producer.produce(self.settings.topic(topic), value, None, partition=partition)
        if self.producer.flush(30):
            raise KafkaException("identity forget commands not acknowledged")

    def _save(self, regulation: Regulation) -> None:
        self.regulations.save(regulation)
        self.client.insert(
            "regulations",
            [
                [
                    regulation.id,
                    regulation.regulation_type,
                    regulation.subject_type,
                    regulation.subject_ids,
                    regulation.status,
                    regulation.created_at,
                    regulation.started_at,
                    regulation.finished_at,
                    regulation.reason or "",
                    regulation.counts,
                    regulation.source,
                    now_micros(),
                ]
            ],
            column_names=[
                "id",
                "regulation_type",
                "subject_type",
                "subject_ids",
                "status",
                "created_at",
                "started_at",
                "finished_at",
                "reason",
                "counts",
                "source",
                "version",
            ],
        )

    # ---- physical removal -----------------------------------------------------------------

    def purge_if_due(self, force: bool = False) -> int:
        """Remove deleted people's rows when the oldest unpurged deletion is due; ids purged."""
        pending = rows(self.client, PENDING_SQL)
        if not pending:
            return 0
        oldest = min(int(at) for _, at, _, _ in pending)
        if not force and now_micros() - oldest < self.settings.purge_within_seconds * 1e6 / 2:
            return 0
        started = time.monotonic()
        self.second_passes(force=True)
        tables = self._existing_tables()
        # Masked rows are physically removed by rewriting only the parts that hold them.
        for table, _, how in MASKS:
            if table in tables and how == "lightweight":
                self.client.command(
                    self._on_shards(f"ALTER TABLE {table} APPLY DELETED MASK"), settings={"mutations_sync": 2}
                )
        done = now_micros()
        self.client.insert(
            "deleted_ids",
            [
                [str(i), str(regulation), int(at), int(forever), done, done]
                for i, at, forever, regulation in pending
            ],
            column_names=["id", "regulation_id", "deleted_at", "forever", "purged_at", "version"],
        )
        log.info(
            "deleted people purged",
            extra={"ids": len(pending), "seconds": round(time.monotonic() - started, 2)},
        )
        return len(pending)
