"""The evaluator: keeps every live definition's values current, backfills new ones, and records
each change in the change log.

Three ways a value moves, one way it is recorded:

* **Events and identity changes** (:meth:`Evaluator.evaluate_ids`): the ids a batch of the
  events / identity-mapping / identity-state topics touched are resolved to profiles, every
  live definition is computed for those profiles in one query, and the results are diffed
  against the last recorded values (``audiences.changes``).
* **Time** (:meth:`Evaluator.expire`): for each window length W in use, the ids with an event
  that left its window since the last check (timestamp in (last - W, now - W]) are evaluated
  like touched ids.
* **Definitions** (:meth:`Evaluator.refresh`, :meth:`Evaluator.apply_finished`): a new or
  changed definition is computed over every profile by a backfill thread (one query), then
  diffed against what is recorded, then the profiles touched while it ran are evaluated again,
  and only then is it live. A deleted definition's members exit.

Everything that writes holds one lock, so changes are decided and numbered by one writer, in
order; the backfill query itself runs outside it, on a client of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from feedhouse import metrics
from feedhouse.audiences.changes import Change, Current, CurrentCache, Subject, diff
from feedhouse.audiences.compile import Program, UnknownDefinition, compile_definitions
from feedhouse.audiences.definitions import AUDIENCE, Definition
from feedhouse.audiences.evaluate import (
    Scope,
    Values,
    chunks,
    evaluate_all,
    evaluate_scope,
    identified_profiles,
    relevance,
    resolve_scope,
)
from feedhouse.audiences.history import ChangeLog
from feedhouse.audiences.queries import CURRENT_OF_DEFINITION_SQL, CURRENT_OF_PROFILES_SQL, expiring_sql
from feedhouse.audiences.store import Status, Store, StoredDefinition, now_micros
from feedhouse.read.sql import rows
from feedhouse.retry import Backoff, Wait

log = logging.getLogger(__name__)

DAY_MICROS = 86_400_000_000
DELETED = "deleted"  # the status fingerprint of a computation whose members were sent away
EXPIRY_MARK = "expiry_checked_until"
# Touched ids per evaluation query: a query has a fixed cost (planning ~0.1-0.3 s here), so
# larger scopes are cheaper per id (measured at 1M events: 0.27 ms/id at 2,000, 0.14 at 10,000).
SCOPE_CHUNK = 10_000
PROGRESS_SECONDS = 30.0
STALE_EVERY = 10  # refreshes between checks for deleted computations that still have values
STALE_SQL = "SELECT DISTINCT computation_id FROM computed_current"
SUBJECT_SQL = """
SELECT any(kind), any(definition_key) FROM computed_current WHERE computation_id = {computation:String}
"""


@dataclass
class Live:
    """A definition evaluated incrementally: its stored form, fingerprint and log identity."""

    stored: StoredDefinition
    fingerprint: str

    @property
    def subject(self) -> Subject:
        return Subject(self.stored.kind, self.stored.key, self.stored.computation_id)


@dataclass
class Job:
    """A backfill: one definition computed over every profile, then applied by the evaluator."""

    stored: StoredDefinition
    fingerprint: str
    known: dict[str, Definition]  # every definition by key, when the job was made
    program: Program
    pending: set[str] = field(default_factory=set)  # profiles touched since the job was created
    cancelled: bool = False
    result: Values | None = None
    now: int = 0
    seconds: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)


class Evaluator:
    """Definitions -> values -> changes. See the module docstring for the three triggers."""

    def __init__(
        self,
        client: Client,
        backfill_client: Client | None = None,
        *,
        clock: Callable[[], int] = now_micros,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.backfill_client = backfill_client or client
        self.store = Store(client)
        self.log = ChangeLog(client, backoff)
        self.cache = CurrentCache()
        self.clock = clock
        self.lock = threading.RLock()
        self.live: dict[str, Live] = {}  # computation id -> definition
        self.jobs: dict[str, Job] = {}
        self.backfills: queue.Queue[Job] = queue.Queue()
        self.program: Program | None = None
        self.order: list[Live] = []  # the program's outputs, in this order
        self.expiry_mark: int | None = None
        self._refreshes = 0
        self._totals = [0.0] * 5  # passes, touched ids, changes, seconds, slowest pass
        self._logged_at = time.monotonic()

    # ---- definitions ----------------------------------------------------------------------

    def refresh(self, wait: Wait) -> None:
        """Bring the evaluator in line with the stored definitions (new, changed, deleted)."""
        with self.lock:
            definitions = self.store.definitions()
            statuses = self.store.statuses()
            known = definitions.known
            wanted = {s.computation_id: (s, definitions.fingerprint(s)) for s in definitions.by_key.values()}
            changed = False
            for computation_id, live in list(self.live.items()):
                if computation_id not in wanted or wanted[computation_id][1] != live.fingerprint:
                    del self.live[computation_id]
                    changed = True
            for computation_id, job in list(self.jobs.items()):
                if computation_id not in wanted or wanted[computation_id][1] != job.fingerprint:
                    job.cancelled = True
                    del self.jobs[computation_id]
            for computation_id, (stored, fingerprint) in wanted.items():
                if computation_id in self.live:
                    self.live[computation_id].stored = stored  # a new name keeps the values
                    continue
                if computation_id in self.jobs:
                    continue
                status = statuses.get(computation_id)
                if status is not None and status.fingerprint == fingerprint:
                    self.live[computation_id] = Live(stored, fingerprint)
                    changed = True
                else:
                    try:
                        program = compile_definitions([stored.definition], known)
                    except UnknownDefinition as exc:
                        log.error(
                            "definition tests an unknown computed trait or audience",
                            extra={"definition": stored.key, "tested": str(exc)},
                        )
                        continue
                    job = Job(stored, fingerprint, known, program)
                    self.jobs[computation_id] = job
                    self.backfills.put(job)
                    log.info(
                        "backfill scheduled", extra={"definition": stored.key, "revision": stored.revision}
                    )
            if changed:
                self._recompile(known)
            self._refreshes += 1
            if changed or self._refreshes % STALE_EVERY == 1:
                self._exit_stale(set(wanted), statuses, wait)
            metrics.AUDIENCE_DEFINITIONS.labels("live").set(len(self.live))
            metrics.AUDIENCE_DEFINITIONS.labels("backfilling").set(len(self.jobs))

    def _recompile(self, known: dict[str, Definition]) -> None:
        order = sorted(self.live.values(), key=lambda live: (live.stored.kind, live.stored.key))
        usable: list[Live] = []
        for live in order:
            try:
                compile_definitions([live.stored.definition], known)
            except UnknownDefinition as exc:
                log.error(
                    "definition tests an unknown computed trait or audience",
                    extra={"definition": live.stored.key, "tested": str(exc)},
                )
                continue
            usable.append(live)
        self.order = usable
        self.program = (
            compile_definitions([live.stored.definition for live in usable], known) if usable else None
        )

    def _exit_stale(self, wanted: set[str], statuses: dict[str, Status], wait: Wait) -> None:
        """Members of computations that no longer exist (deleted, or re-created under a new id) exit."""
        done = {cid for cid, status in statuses.items() if status.fingerprint == DELETED}
        stale = {str(cid) for (cid,) in rows(self.client, STALE_SQL)} - wanted - done
        for computation_id in sorted(stale):
            found = rows(self.client, SUBJECT_SQL, computation=computation_id)
            kind, key = (str(found[0][0]), str(found[0][1])) if found else ("", "")
            subject = Subject(kind, key, computation_id)
            now = self.clock()
            changes = [
                change
                for profile, current in self._current_of_definition(computation_id).items()
                if current.present
                and (change := diff(subject, profile, None, None, current, cause="deleted", now=now))
                is not None
            ]
            self._write(changes, wait)
            self.store.mark_live(computation_id, DELETED, 0.0)
            log.info("definition removed: members exited", extra={"definition": key, "changes": len(changes)})

    # ---- backfills ------------------------------------------------------------------------

    def run_backfills(self, jobs: Sequence[Job]) -> None:
        """Compute the jobs' definitions over every profile, in one query (the backfill thread)."""
        started = time.perf_counter()
        program = compile_definitions([job.stored.definition for job in jobs], jobs[0].known)
        now = self.clock()
        kinds = [job.stored.kind for job in jobs]
        values = evaluate_all(self.backfill_client, program, now, kinds)
        seconds = time.perf_counter() - started
        for index, job in enumerate(jobs):
            member = job.stored.kind == AUDIENCE
            job.result = {
                profile: (identified, (outputs[index],))
                for profile, (identified, outputs) in values.items()
                if (outputs[index] == 1 if member else outputs[index] is not None)
            }
            job.now, job.seconds = now, seconds
            job.done.set()

    def apply_finished(self, wait: Wait) -> None:
        """Apply every finished backfill: its changes, a catch-up pass, then it is live."""
        for job in [j for j in list(self.jobs.values()) if j.done.is_set()]:
            with self.lock:
                if job.cancelled or self.jobs.get(job.stored.computation_id) is not job:
                    continue
                self._apply(job, wait)

    def _apply(self, job: Job, wait: Wait) -> None:
        assert job.result is not None
        applied = time.perf_counter()
        live = Live(job.stored, job.fingerprint)
        subject = live.subject
        current = self._current_of_definition(subject.computation_id)
        changes: list[Change] = []
        for profile, (identified, outputs) in job.result.items():
            change = diff(
                subject,
                profile,
                identified,
                outputs[0],
                current.get(profile),
                cause="definition",
                now=job.now,
            )
            if change is not None:
                changes.append(change)
        for profile, known in current.items():
            if known.present and profile not in job.result:
                change = diff(subject, profile, None, None, known, cause="definition", now=job.now)
                if change is not None:
                    changes.append(change)
        self._write(changes, wait)
        # Profiles touched while the backfill ran: their newest events may be missing from it.
        program = job.program
        now = self.clock()
        pending = sorted(job.pending)
        for part in chunks(pending, SCOPE_CHUNK):
            scope = resolve_scope(self.client, part)
            values = evaluate_scope(self.client, program, scope, now)
            self._write(self._diff_scope(scope, values, [live], "events", now), wait)
        self.store.mark_live(subject.computation_id, job.fingerprint, job.seconds)
        metrics.AUDIENCE_BACKFILL_SECONDS.labels(subject.key).set(job.seconds)
        del self.jobs[subject.computation_id]
        self.live[subject.computation_id] = live
        self._recompile(job.known)
        log.info(
            "definition live",
            extra={
                "definition": subject.key,
                "revision": job.stored.revision,
                "backfill_s": round(job.seconds, 3),
                "apply_s": round(time.perf_counter() - applied, 3),
                "values": len(job.result),
                "changes": len(changes),
                "caught_up": len(pending),
            },
        )

    # ---- incremental passes ---------------------------------------------------------------

    def relevant(self, seen: Mapping[str, set[tuple[str, str]]]) -> set[str]:
        """The ids whose new events (``(type, event name)`` per id) some definition counts.

        An event no selector of a live or backfilling definition matches cannot move any value
        (time is the expiry's job), so its profile is not evaluated for it: the work follows the
        events the definitions are about, not all traffic.
        """
        programs = [self.program] if self.program is not None else []
        programs += [job.program for job in self.jobs.values()]
        names = frozenset().union(*(p.events for p in programs))
        kinds = frozenset().union(*(p.types for p in programs))
        return {
            identifier
            for identifier, signatures in seen.items()
            if any(kind in kinds or (kind == "track" and name in names) for kind, name in signatures)
        }

    def evaluate_ids(
        self,
        touched: Iterable[str],
        moved: Iterable[str],
        cause: str,
        wait: Wait,
        now: int | None = None,
        seen: Mapping[str, set[tuple[str, str]]] | None = None,
    ) -> int:
        """Evaluate the profiles ``touched`` ids concern (``moved``: ids whose mapping changed;
        ``seen``: ids touched by new events, with their events' (type, event name): those whose
        events no definition counts are skipped (:meth:`relevant`), and the profiles of the others
        evaluated for what those events can move, ``evaluate.relevance``); returns the number of
        changes recorded."""
        whole = set(touched) | set(moved)
        seen = seen or {}
        seen = {identifier: seen[identifier] for identifier in self.relevant(seen) if identifier not in whole}
        touched_ids = sorted(whole | seen.keys())
        moved_ids = set(moved)
        if not touched_ids:
            return 0
        started = time.perf_counter()
        recorded = 0
        with self.lock:
            at = self.clock() if now is None else now
            for part in chunks(touched_ids, SCOPE_CHUNK):
                scope = resolve_scope(self.client, part, [i for i in part if i in moved_ids])
                for job in self.jobs.values():
                    job.pending.update(scope.candidates)
                if self.program is None:
                    continue
                part_seen = {i: seen[i] for i in part if i in seen}
                narrowed = relevance(self.program, scope, part_seen, [i for i in part if i in whole])
                values = evaluate_scope(self.client, self.program, scope, at, narrowed)
                changes = self._diff_scope(scope, values, self.order, cause, at, narrowed.outputs)
                self._write(changes, wait)
                recorded += len(changes)
                metrics.child(metrics.AUDIENCE_PROFILES, cause).inc(len(scope.candidates))
        spent = time.perf_counter() - started
        metrics.child(metrics.AUDIENCE_PASS_SECONDS, cause).observe(spent)
        self._progress(len(touched_ids), recorded, spent)
        return recorded

    def _progress(self, touched: int, recorded: int, spent: float) -> None:
        """One log line every PROGRESS_SECONDS: what the passes did (operators follow the evaluator)."""
        totals = self._totals
        totals[0] += 1
        totals[1] += touched
        totals[2] += recorded
        totals[3] += spent
        totals[4] = max(totals[4], spent)
        now = time.monotonic()
        if now - self._logged_at >= PROGRESS_SECONDS:
            passes, ids, changes, seconds, slowest = totals
            log.info(
                "evaluator passes",
                extra={
                    "passes": int(passes),
                    "touched_ids": int(ids),
                    "changes": int(changes),
                    "busy_s": round(seconds, 2),
                    "slowest_s": round(slowest, 3),
                    "live": len(self.live),
                    "cached": len(self.cache),
                },
            )
            self._totals = [0.0] * 5
            self._logged_at = now

    def _diff_scope(
        self,
        scope: Scope,
        values: Values,
        order: Sequence[Live],
        cause: str,
        now: int,
        narrowed: Mapping[str, frozenset[int]] | None = None,
    ) -> list[Change]:
        """Changes of the scope's profiles; ``narrowed``: profiles evaluated for some outputs
        only (``evaluate.relevance``), whose other outputs are left as recorded."""
        narrowed = narrowed or {}
        computations = [live.stored.computation_id for live in order]
        current = self._load_current([p for p in scope.candidates if narrowed.get(p, True)], computations)
        moved: list[tuple[Subject, str, object, Current | None, bool]] = []
        # The hot loop of a pass (profiles x definitions): plain comparisons, no allocation
        # unless something moved.
        subjects = [(index, live.subject, live.stored.kind == AUDIENCE) for index, live in enumerate(order)]
        for profile in scope.candidates:
            chosen = narrowed.get(profile)
            if chosen is not None and not chosen:
                continue  # nothing its new events count is live (a backfilling definition's)
            found = values.get(profile)
            outputs = found[1] if found is not None else None
            states = current[profile]
            for index, subject, audience in subjects:
                if chosen is not None and index not in chosen:
                    continue
                known = states.get(subject.computation_id)
                new = outputs[index] if outputs is not None else None
                if audience:
                    same = (new == 1) == (known is not None and known.member)
                else:
                    same = (new or "") == (known.value if known is not None else "")
                if not same:
                    moved.append((subject, profile, new, known, found is not None))
        # Who the messages name is looked up for the profiles that changed only.
        named = identified_profiles(self.client, {profile for _, profile, _, _, alive in moved if alive})
        changes = [
            diff(subject, profile, (profile in named) if alive else None, new, known, cause=cause, now=now)
            for subject, profile, new, known, alive in moved
        ]
        return [change for change in changes if change is not None]

    def _write(self, changes: Sequence[Change], wait: Wait) -> None:
        """Record ``changes`` in the log and in the cache of current values."""
        try:
            self.log.write(changes, wait)
        except BaseException:
            self.cache.clear()  # a write that may or may not have landed: read back from now on
            raise
        self.cache.record(changes)

    def discard(self) -> None:
        """A batch was abandoned mid-write: forget what may not have been written."""
        self.log.reset()
        self.cache.clear()

    def forget_cached(self) -> None:
        """People were deleted (``feedhouse.privacy`` removed their rows): nothing cached about
        them may survive, or a person who comes back (``DELETE_ONLY``) would be compared with
        their old values. Between passes; the numbering is read back too (its floor)."""
        with self.lock:
            self.discard()

    def _load_current(
        self, profiles: Sequence[str], computations: list[str]
    ) -> dict[str, dict[str, Current | None]]:
        """profile -> computation id -> its last recorded state, for every (profile, computation):
        from the cache, what it lacks read (and cached, absences too). Taken before anything is
        read, so what the cache evicts meanwhile is still here."""
        states = {profile: self.cache.states(profile) for profile in profiles}
        for part in chunks(sorted(self.cache.missing(profiles, computations))):
            read: dict[tuple[str, str], Current] = {
                (str(computation_id), str(profile)): Current.of(state)
                for computation_id, profile, state in rows(
                    self.client, CURRENT_OF_PROFILES_SQL, profiles=part, computations=computations
                )
            }
            for profile in part:
                fresh = {
                    computation_id: read.get((computation_id, profile)) for computation_id in computations
                }
                self.cache.replace(profile, fresh)
                states[profile] = fresh
        return states

    def _current_of_definition(self, computation_id: str) -> dict[str, Current]:
        return {
            str(profile): Current.of(state)
            for profile, state in rows(self.client, CURRENT_OF_DEFINITION_SQL, computation=computation_id)
        }

    # ---- time -----------------------------------------------------------------------------

    def expire(self, wait: Wait, now: int | None = None) -> int:
        """Evaluate profiles whose windowed events left their window since the last check."""
        with self.lock:
            at = self.clock() if now is None else now
            mark = self.expiry_mark
            if mark is None:
                mark = self.store.evaluator_value(EXPIRY_MARK) or at
            program = self.program
            keys: list[str] = []
            if program is not None and program.windows and at > mark:
                lows = [mark - days * DAY_MICROS for days in program.windows]
                highs = [at - days * DAY_MICROS for days in program.windows]
                keys = [
                    str(key)
                    for (key,) in rows(
                        self.client,
                        expiring_sql(program),
                        low=min(lows),
                        high=max(highs),
                        lows=lows,
                        highs=highs,
                        **program.parameters,
                    )
                ]
            recorded = self.evaluate_ids(keys, (), "window", wait, now=at) if keys else 0
            self.expiry_mark = at
            self.store.set_evaluator_value(EXPIRY_MARK, at)
            return recorded
