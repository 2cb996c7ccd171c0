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
4. ``FINISHED`` with the counts, or ``FAILED`` with the reason;
5. the timelines' and the feed's lookup tables are masked too (``LOOKUPS``: they are read only
   through ``events``, masked before ``FINISHED``).

Rows are masked at once with ClickHouse's lightweight ``DELETE FROM`` written as patch parts
(``lightweight_delete_mode = 'lightweight_update'``: one indexed read and a small insert per
table, applied by every read from then on, the analyst views included; the rows stay in their
parts), and again a few seconds later for what was in flight. Physically they go with ``ALTER
TABLE ... APPLY PATCHES`` then ``APPLY DELETED MASK``, which rewrite only the parts holding masked
rows, run once the oldest unpurged deletion is half of ``FEEDHOUSE_PURGE_WITHIN_SECONDS`` old,
for all pending deletions together (one rewrite per table per batch); ``purged_at`` records when
each id's rows were gone. A server without patch parts (before ClickHouse 25.7) gets the classic
lightweight delete, a mutation per table whose time grows with the table's parts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaException, Producer

from feedhouse.audiences.queries import KEEP_SEQ_FLOOR_SQL
from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse.cluster import LOCAL, local_statement
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
# The mirrors are deleted from by key (a condition on another column reads the whole table):
# ``related`` is every id mapped to the deleted profiles, looked up before the pass's deletes.
_MAPPED_BY_KEY = f"id IN {{related:Array(String)}} AND {_MAPPED}"
RELATED_SQL = """
SELECT DISTINCT id FROM id_mapping_by_profile WHERE profile_id IN (SELECT arrayJoin({ids:Array(String)}))
"""
_MEMBERS = "profile_id IN {ids:Array(String)} AND updated_at <= {at}"
# Older versions of another profile can still list an id that left it. ``arrayExists`` with
# ``IN`` looks each listed id up in one hashed set; ``hasAny`` compared every pair (7 s against
# 0.04 s at 10M events, 2,290 ids: bench.privacy).
_MEMBERS_ANYWHERE = (
    "(profile_id IN {ids:Array(String)} OR arrayExists(i -> i IN {ids:Array(String)}, ids))"
    " AND updated_at <= {at}"
)
_LAST_SEEN = "person_key IN {ids:Array(String)} AND ({forever:UInt8} = 1 OR last_seen <= {at})"
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
#   Migration 0016 gives these tables the block columns patch parts need.
# * "mutation": ``ALTER TABLE ... DELETE`` rewrites the parts at once: for person_recency, whose
#   projection a lightweight delete would leave stale (it is one small row per person).
# * "key-value": ``DELETE FROM`` a key-value mirror (migration 0018), by key: its rows go at
#   once, there are no parts to rewrite later, and every pass deletes from it again. First in
#   the list, since the ids related to a deleted profile are found in id_mapping_by_profile.
MASKS: tuple[tuple[str, str, str], ...] = (
    ("id_mapping_kv", _MAPPED_BY_KEY, "key-value"),
    ("id_state_kv", _ID_STATE, "key-value"),
    ("profile_members_kv", _MEMBERS, "key-value"),
    ("person_seen_kv", _LAST_SEEN, "key-value"),
    ("events", _EVENT_ROWS, "lightweight"),
    ("events_by_person_time", _EVENT_ROWS, "lightweight"),
    ("events_by_time", _EVENT_ROWS, "lightweight"),
    ("person_recency", _LAST_SEEN, "mutation"),
    (
        "rejected_events",
        "(JSONExtractString(payload, 'userId') IN {ids:Array(String)}"
        " OR JSONExtractString(payload, 'anonymousId') IN {ids:Array(String)})"
        " AND ({forever:UInt8} = 1 OR received_at <= {at})",
        "lightweight",
    ),
    ("id_mapping", _MAPPED, "lightweight"),
    ("id_mapping_by_profile", _MAPPED, "lightweight"),
    ("profile_members", _MEMBERS_ANYWHERE, "lightweight"),
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
# Each key-value mirror and the table whose inserts fill it (its materialized view).
MIRRORS = {
    "id_mapping_kv": "id_mapping",
    "id_state_kv": "id_state",
    "profile_members_kv": "profile_members",
    "person_seen_kv": "events",
}
# The time-ordered lookup tables of the timelines and the feed are read only through ``events``:
# each candidate there is shown only with its winning copy in ``events``, which the deletion masks
# first (docs/privacy.md). So their own masks can follow FINISHED: about a third of a deletion's
# work at 10M events (bench.privacy), kept off the request's path. Until they land, the only
# answer that reads them alone is a profile's per-day activity chart, and a deleted profile has
# none to show (under DELETE_ONLY, one who returns within those seconds could see their old
# days counted).
LOOKUPS = frozenset({"events_by_person_time", "events_by_time"})
# Rows derived from what was deleted can still be in flight when the deletion starts (a sink
# batch, a command an identity agent is applying): the masks run again this long after.
SECOND_PASS_SECONDS = 10.0
# Each table's newest block number when a deletion's first pass began: later passes only need
# to look at the parts holding blocks written since (what a sink inserted meanwhile), a small
# read. (Block numbers, not part names: a mutation renames every part it rewrites.)
Parts = dict[str, int] | None
# How long after the deletion is acknowledged every process following the deletions topic has
# read it (consumers wait at most 100 ms for a fetch, then apply it at once; docs/privacy.md).
SINK_LEARNS_SECONDS = 0.5
AT = "fromUnixTimestamp64Micro({at_micros:Int64}, 'UTC')"


def wait_for_mutations(client: Client, table: str | None = None, timeout: float = 600.0) -> None:
    """Until the mutations queued on ``table`` (every table when None) are done: the deletes of
    ``person_recency`` and the patches' rewrites are not waited for when queued."""
    statement = (
        "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND NOT is_done"
        " AND ({table:String} = '' OR table = {table:String})"
    )
    deadline = time.monotonic() + timeout
    while rows(client, statement, table=table or "")[0][0]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{table or 'mutations'}: still queued after {timeout:.0f} s")
        time.sleep(0.2)


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
        self._second_passes: list[tuple[float, list[str], int, bool, Parts]] = []
        self._lookups_to_mask: list[tuple[list[str], int, bool]] = []  # FINISHED, lookups not yet
        self._patch_parts: bool | None = None
        # Kafka round trips (the status, the suppression list, the deleted ids, the forget
        # commands) run beside the ClickHouse work of a deletion.
        self._pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="feedhouse-privacy-step")

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
        self._pool.shutdown(wait=False, cancel_futures=True)

    def health(self) -> tuple[bool, str]:
        if self._thread is None or not self._thread.is_alive():
            return False, f"regulation executor stopped: {self.last_error}"
        return True, "running"

    def _run(self, stop: threading.Event) -> None:
        self.warm()
        requeued = False
        while not stop.wait(0.2):
            try:
                if not requeued:  # in the loop: ClickHouse may not answer yet at start
                    self.requeue_lookups()
                    requeued = True
                for regulation in reversed(self.regulations.all()):  # oldest first
                    if regulation.status in ("INITIALIZED", "RUNNING"):
                        self.execute(regulation)
                self.mask_lookups()
                self.second_passes()
                self.purge_if_due()
            except Exception as exc:  # keep running: the next pass retries
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("regulation executor pass failed")
                stop.wait(2.0)

    def warm(self) -> None:
        """Ready the writers a regulation waits on (a first write is slow: feedhouse.compacted)."""
        try:
            for table in (self.regulations.table, self.suppressions.table, self.deleted.table):
                table.warm_writer()
        except KafkaException:  # not fatal: the first regulation is merely slower
            log.warning("privacy writers not warmed", exc_info=True)

    # ---- one regulation -------------------------------------------------------------------

    def execute(self, regulation: Regulation) -> None:
        """Carry out ``regulation`` (again, if a previous run died half-way: every step is idempotent)."""
        regulation.status, regulation.started_at = "RUNNING", regulation.started_at or now_micros()
        # Written while the work goes on; FINISHED (same producer, same partition) comes after.
        running = self._pool.submit(self._save, replace(regulation))
        try:
            ids = self.person_ids(regulation.subject_ids)
            counts: dict[str, int] = {"ids": len(ids)}
            suppressed: Future[None] | None = None
            if regulation.suppresses:
                suppressed = self._pool.submit(self.suppressions.suppress, ids, regulation.id)
                counts["suppressed_ids"] = len(ids)
            if regulation.unsuppresses:
                lifted = [i for i in {*ids, *regulation.subject_ids} if i in self.suppressions.ids]
                self.suppressions.lift(lifted)
                counts["unsuppressed_ids"] = len(lifted)
            if regulation.deletes:
                counts.update(self.delete(ids, regulation))
            if suppressed is not None:
                suppressed.result()  # FINISHED means every gateway is dropping their events
            regulation.counts = counts
            regulation.status = "FINISHED"
        except Exception as exc:
            log.exception("regulation failed", extra={"regulation": regulation.id})
            regulation.status, regulation.reason = "FAILED", f"{type(exc).__name__}: {exc}"[:500]
        regulation.finished_at = now_micros()
        running.result()
        self._save(regulation)
        if regulation.deletes and regulation.status == "FINISHED":
            try:
                self.mask_lookups()
            except Exception:  # still queued: the executor's next pass retries
                log.exception("lookup masks failed", extra={"regulation": regulation.id})
            self.materialize_patches()

    def person_ids(self, subjects: Sequence[str]) -> list[str]:
        found: set[str] = set()
        for start in range(0, len(subjects), 1000):
            chunk = list(subjects[start : start + 1000])
            found |= {str(i) for i in rows(self.client, PERSON_IDS_SQL, subjects=chunk)[0][0]}
        return sorted(found)

    def delete(self, ids: list[str], regulation: Regulation) -> dict[str, int]:
        at = now_micros()
        forever = regulation.suppresses
        # From here on: the sink and the router write nothing of them, and the identity agents
        # forget them (through Kafka, beside the counting below)...
        writers = self._pool.submit(self._stop_writers, ids, regulation.id, at, forever)
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
        # ...and their rows disappear from every answer. A sink may still insert a batch it
        # filled before it learnt of the deletion: once none can, the parts written since the
        # first pass are masked too (and once more later, for what the identity agents had in
        # flight).
        before = self.data_parts()
        self.mask(ids, at, forever, skip=LOOKUPS)
        with self._lock:
            self._lookups_to_mask.append((ids, at, forever))
        # What was removed, counted once it is invisible (reading past the masks; rows an
        # earlier deletion of the same ids masked and the purge has not yet removed count again).
        events, states, mapped = rows(self.client, self._unmasked(COUNT_SQL), ids=ids)[0]
        settled = writers.result() + self.settings.sink_batch_seconds + SINK_LEARNS_SECONDS
        time.sleep(max(0.0, settled - time.monotonic()))
        self.mask(ids, at, forever, since=before)
        with self._lock:
            self._second_passes.append((time.monotonic() + SECOND_PASS_SECONDS, ids, at, forever, before))
        return {
            "events": int(events),
            "id_states": int(states),
            "mapped_ids": int(mapped),
            "computed_changes": changes,
        }

    def _stop_writers(self, ids: list[str], regulation_id: str, at: int, forever: bool) -> float:
        """Record the deletion and tell the identity agents; when (monotonic) it was recorded."""
        self.deleted.record(ids, regulation_id, at, forever)
        recorded = time.monotonic()
        self.forget(ids, regulation_id, at)
        return recorded

    def mask(
        self, ids: list[str], at: int, forever: bool, since: Parts = None, skip: Iterable[str] = ()
    ) -> None:
        """Remove every row of ``ids`` from every answer (idempotent); with ``since``, only
        from the parts written after it was taken; the tables in ``skip`` are left alone.

        One table after the other: each delete is a scan of the table's key column, which uses
        both cores already (two at a time measured slower at 10M events: bench.privacy).
        """
        tables = self._existing_tables() - set(skip)
        fresh: dict[str, list[str]] = {}
        if since is not None:  # only where something was written since
            fresh = self._parts_after(since)
            # A mirror has no parts: it was written to since only if its source table was.
            tables = tables & (set(fresh) | {kv for kv, source in MIRRORS.items() if source in fresh})
        parameters: dict[str, Any] = {"ids": ids, "at_micros": at, "forever": 1 if forever else 0}
        if "id_mapping_kv" in tables:
            related = {str(i) for (i,) in rows(self.client, RELATED_SQL, ids=ids)}
            parameters["related"] = sorted(related | set(ids))
        for table, condition, how in MASKS:
            if table not in tables:
                continue
            where = condition.replace("{at}", AT)
            if since is not None and how != "key-value":
                # ClickHouse picks the parts by name before reading anything.
                where = f"({where}) AND _part IN {{fresh:Array(String)}}"
                parameters = {**parameters, "fresh": fresh[table]}
            if how == "lightweight":
                statement, settings = f"DELETE FROM {table} WHERE {where}", self._lightweight_settings()
            elif how == "key-value":
                statement, settings = f"DELETE FROM {table} WHERE {where}", {}
            else:
                # Not waited for: readers of person_recency apply pending mutations on the fly
                # (the people list sets apply_mutations_on_fly), so it is masked at once anyway.
                statement, settings = f"ALTER TABLE {table} DELETE WHERE {where}", {"mutations_sync": 0}
            started = time.monotonic()
            self.client.command(self._on_shards(statement), parameters=parameters, settings=settings)
            # Which table a deletion's time goes to (bench.privacy prints these).
            log.debug("masked", extra={"table": table, "seconds": round(time.monotonic() - started, 3)})

    def requeue_lookups(self) -> None:
        """Queue the lookup masks of every deletion not yet purged: a process stopped between a
        deletion's FINISHED and its lookup masks would otherwise leave them unmasked, and the
        purge removes only masked rows. Masking again what is masked already finds nothing."""
        groups: dict[tuple[int, bool], list[str]] = {}
        for identifier, deleted_at, forever, _ in rows(self.client, PENDING_SQL):
            # Under SUPPRESS_WITH_DELETE every row goes whatever its time: one pass for all.
            key = (0, True) if forever else (int(deleted_at), False)
            groups.setdefault(key, []).append(str(identifier))
        with self._lock:
            self._lookups_to_mask.extend((ids, at, forever) for (at, forever), ids in groups.items())

    def mask_lookups(self) -> None:
        """Mask the lookup tables (``LOOKUPS``) for the deletions whose other masks are in place.

        Each deletion stays queued until its masks succeed: a failure is retried on the next
        pass, and the purge (which removes only masked rows) waits for it.
        """
        while True:
            with self._lock:
                if not self._lookups_to_mask:
                    return
                ids, at, forever = self._lookups_to_mask[0]
            self.mask(ids, at, forever, skip=self._existing_tables() - LOOKUPS)
            with self._lock:
                self._lookups_to_mask.pop(0)

    def _unmasked(self, statement: str) -> str:
        hidden = "apply_deleted_mask = 0" + (", apply_patch_parts = 0" if self.patch_parts() else "")
        return f"{statement} SETTINGS {hidden}"

    def data_parts(self) -> Parts:
        """Each table's newest block number now (None in cluster mode: every shard numbers its
        own, so later passes there read every part)."""
        if self.settings.clickhouse_cluster:
            return None
        statement = (
            "SELECT table, max(max_block_number) FROM system.parts"
            " WHERE database = currentDatabase() AND active AND NOT startsWith(name, 'patch-')"
            " GROUP BY table"
        )
        return {str(table): int(block) for table, block in rows(self.client, statement)}

    def _parts_after(self, since: dict[str, int]) -> dict[str, list[str]]:
        """The active data parts of each table holding blocks written after ``since``."""
        statement = (
            "SELECT table, groupArray(name) FROM system.parts"
            " WHERE database = currentDatabase() AND active AND NOT startsWith(name, 'patch-')"
            " AND max_block_number > {blocks:Array(Int64)}[indexOf({tables:Array(String)}, table)]"
            " GROUP BY table"
        )
        return {
            str(table): [str(name) for name in names]
            for table, names in rows(self.client, statement, tables=list(since), blocks=list(since.values()))
        }

    def patch_parts(self) -> bool:
        """Whether the server writes lightweight deletes as patch parts (ClickHouse 25.7 on)."""
        if self._patch_parts is None:
            statement = "SELECT count() FROM system.settings WHERE name = 'lightweight_delete_mode'"
            self._patch_parts = bool(rows(self.client, statement)[0][0])
        return self._patch_parts

    def _lightweight_settings(self) -> dict[str, Any]:
        if self.patch_parts():
            return {"lightweight_delete_mode": "lightweight_update"}
        return {"lightweight_deletes_sync": 2}

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
        for _, ids, at, forever, before in due:
            self.mask(ids, at if forever else at + int(SECOND_PASS_SECONDS * 1e6), forever, since=before)
        if due:
            self.materialize_patches()

    def materialize_patches(self) -> None:
        """Put the patch parts into the parts' own row masks, in the background.

        Every read applies the patch parts until then, which costs reads more than the row
        masks that replace them (bench.privacy; docs/privacy.md). The rewrite is one small
        column per part, queued as a mutation. Applied patch parts still cost reads until the
        table's cleanup task retires them, which migration 0017 makes a matter of seconds.
        """
        if not self.patch_parts():
            return
        tables = self._existing_tables()
        for table, _, how in MASKS:
            if table in tables and how == "lightweight":
                statement = self._on_shards(f"ALTER TABLE {table} APPLY PATCHES")
                self.client.command(statement, settings={"mutations_sync": 0})

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
        self.mask_lookups()
        self.second_passes(force=True)
        tables = self._existing_tables()
        # Masked rows are physically removed by rewriting only the parts that hold them: the
        # patches first go into the parts' row masks, then the masked rows go. (Patch parts, which
        # hold only the ordering key of the rows they mask, are dropped by the server's cleanup
        # once no part needs them, within a minute.)
        steps = ("APPLY PATCHES", "APPLY DELETED MASK") if self.patch_parts() else ("APPLY DELETED MASK",)
        for table, _, how in MASKS:
            if table in tables and how == "lightweight":
                for step in steps:
                    self.client.command(
                        self._on_shards(f"ALTER TABLE {table} {step}"), settings={"mutations_sync": 2}
                    )
            elif table in tables and how == "mutation":
                name = f"{table}{LOCAL}" if self.settings.clickhouse_cluster else table
                wait_for_mutations(self.client, name)
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
