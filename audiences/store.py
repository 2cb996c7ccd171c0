"""Definitions, their status, destinations and delivery cursors, kept in ClickHouse.

Each is a ReplacingMergeTree written one row per change (``client.insert``, never SQL text)
and read back with ``argMax(..., version)`` per key, so every process sees the same current
rows the moment a write returns (migration 0010 says why ClickHouse and not a topic).
Versions are microsecond clocks, bumped past the previous version of the key, so the newest
write wins even when two writes of one key share a microsecond.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from feedhouse.audiences.definitions import (
    AUDIENCE,
    TRAIT,
    Definition,
    DefinitionError,
    fingerprint,
    parse_definition,
)
from feedhouse.audiences.queries import MAX_SEQ_SQL
from feedhouse.read.sql import one, rows

log = logging.getLogger(__name__)

DEFINITION_COLUMNS = (
    "key",
    "kind",
    "computation_id",
    "revision",
    "body",
    "deleted",
    "created_at",
    "updated_at",
    "version",
)
DEFINITIONS_SQL = """
SELECT key, state.1, state.2, state.3, state.4, state.5,
       toUnixTimestamp64Micro(state.6), toUnixTimestamp64Micro(state.7), state.8
FROM
(
    SELECT
        key,
        argMax((kind, computation_id, revision, body, deleted, created_at, updated_at, version), version)
            AS state
    FROM definitions
    GROUP BY key
)
ORDER BY key
"""
STATUS_SQL = """
SELECT computation_id, argMax((fingerprint, toUnixTimestamp64Micro(live_at), backfill_seconds), version)
FROM computation_status
GROUP BY computation_id
"""
SIZES_SQL = """
SELECT computation_id, countIf(current.1 = 1 OR current.2 != '')
FROM
(
    SELECT computation_id, profile_id, argMax((member, value), seq) AS current
    FROM computed_current
    WHERE computation_id IN {computations:Array(String)}
    GROUP BY computation_id, profile_id
)
GROUP BY computation_id
"""
DESTINATIONS_SQL = """
SELECT key, state.1, state.2, state.3, state.4, state.5, toUnixTimestamp64Micro(state.6), state.7
FROM
(
    SELECT key, argMax((destination_id, type, config, only, deleted, created_at, version), version) AS state
    FROM destinations
    GROUP BY key
)
ORDER BY key
"""
CURSOR_SQL = """
SELECT argMax(
    (
        seq, initial_done, delivered, dead_lettered, toUnixTimestamp64Micro(updated_at), version,
        sync_head, sync_computation, sync_after
    ),
    version
)
FROM destination_cursors
WHERE destination_id = {destination:String}
HAVING count() > 0
"""
EVALUATOR_STATE_SQL = """
SELECT argMax(value, version) FROM evaluator_state WHERE name = {name:String} HAVING count() > 0
"""


def now_micros() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class StoredDefinition:
    """A definition as stored: the validated tree plus its identity and history."""

    definition: Definition
    computation_id: str
    revision: int
    created_at: int
    updated_at: int
    version: int

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def kind(self) -> str:
        return self.definition.kind


@dataclass(frozen=True, slots=True)
class Status:
    """What the evaluator last finished computing for a definition."""

    fingerprint: str
    live_at: int
    backfill_seconds: float


@dataclass(frozen=True, slots=True)
class StoredDestination:
    key: str
    destination_id: str
    type: str
    config: dict[str, Any]
    only: tuple[str, ...]
    deleted: bool
    created_at: int
    version: int


@dataclass(frozen=True, slots=True)
class Cursor:
    """How far a destination got (see migrations 0010 and 0024).

    While the initial sync is under way (``initial_done`` false) it sends the state as of change
    ``sync_head``, definition after definition by computation id; ``sync_computation`` and
    ``sync_after`` are the last computation and profile sent (``""``: none yet).
    """

    seq: int = 0
    initial_done: bool = False
    delivered: int = 0
    dead_lettered: int = 0
    updated_at: int = 0
    version: int = 0
    sync_head: int = 0
    sync_computation: str = ""
    sync_after: str = ""


@dataclass
class Definitions:
    """Every current definition, with the lookups validation and compilation need."""

    by_key: dict[str, StoredDefinition] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[StoredDefinition]:
        return [stored for stored in self.by_key.values() if stored.kind == kind]

    def keys(self, kind: str) -> frozenset[str]:
        return frozenset(s.key for s in self.by_key.values() if s.kind == kind)

    @property
    def known(self) -> dict[str, Definition]:
        """Every definition by key (keys are unique across traits and audiences)."""
        return {s.key: s.definition for s in self.by_key.values()}

    def fingerprint(self, stored: StoredDefinition) -> str:
        return fingerprint(stored.definition, self.known)

    def dependents(self, key: str) -> list[str]:
        """Audiences that test the computed trait or audience ``key``."""
        return sorted(
            s.key for s in self.by_key.values() if s.kind == AUDIENCE and key in s.definition.uses()
        )


class Store:
    """Reads and writes of the tables in migration 0010, through one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    # ---- definitions ----------------------------------------------------------------------

    def definitions(self, *, include_deleted: bool = False) -> Definitions:
        """The current definitions (trees re-validated as stored: trait tests keep the kind
        decided when they were saved). A row that no longer validates is logged and skipped."""
        found = Definitions()
        loaded = [tuple(row) for row in rows(self.client, DEFINITIONS_SQL)]
        # Traits first: an audience's trait tests are checked against the trait keys.
        loaded.sort(key=lambda row: (row[1] != TRAIT, row[0]))
        deleted: dict[str, StoredDefinition] = {}
        for key, kind, computation_id, revision, body, is_deleted, created, updated, version in loaded:
            try:
                definition = parse_definition(
                    kind,
                    orjson.loads(body),
                    computed_traits=found.keys(TRAIT),
                    stored=True,
                )
            except (DefinitionError, orjson.JSONDecodeError) as exc:
                log.error("stored definition no longer valid; ignored", extra={"key": key, "error": str(exc)})
                continue
            stored = StoredDefinition(
                definition, computation_id, int(revision), created, updated, int(version)
            )
            if is_deleted:
                deleted[key] = stored
            else:
                found.by_key[key] = stored
        if include_deleted:
            for key, stored in deleted.items():
                found.by_key.setdefault(key, stored)
        return found

    def deleted_definitions(self) -> list[StoredDefinition]:
        everything = self.definitions(include_deleted=True)
        current = self.definitions()
        return [s for key, s in everything.by_key.items() if key not in current.by_key]

    def save_definition(self, stored: StoredDefinition, *, deleted: bool = False) -> None:
        row = [
            stored.key,
            stored.kind,
            stored.computation_id,
            stored.revision,
            orjson.dumps(stored.definition.body).decode(),
            int(deleted),
            stored.created_at,
            stored.updated_at,
            stored.version,
        ]
        self.client.insert("definitions", [row], column_names=list(DEFINITION_COLUMNS))

    def statuses(self) -> dict[str, Status]:
        return {
            str(computation_id): Status(str(state[0]), int(state[1]), float(state[2]))
            for computation_id, state in rows(self.client, STATUS_SQL)
        }

    def mark_live(self, computation_id: str, definition_fingerprint: str, seconds: float) -> None:
        now = now_micros()
        self.client.insert(
            "computation_status",
            [[computation_id, definition_fingerprint, now, seconds, now]],
            column_names=["computation_id", "fingerprint", "live_at", "backfill_seconds", "version"],
        )

    def sizes(self, computation_ids: Iterable[str]) -> dict[str, int]:
        """Members of each audience / profiles with a value of each trait, now."""
        ids = sorted(set(computation_ids))
        if not ids:
            return {}
        return {str(c): int(n) for c, n in rows(self.client, SIZES_SQL, computations=ids)}

    # ---- destinations ---------------------------------------------------------------------

    def destinations(self, *, include_deleted: bool = False) -> dict[str, StoredDestination]:
        found: dict[str, StoredDestination] = {}
        for key, destination_id, kind, config, only, deleted, created, version in rows(
            self.client, DESTINATIONS_SQL
        ):
            if deleted and not include_deleted:
                continue
            found[str(key)] = StoredDestination(
                str(key),
                str(destination_id),
                str(kind),
                orjson.loads(config),
                tuple(only),
                bool(deleted),
                int(created),
                int(version),
            )
        return found

    def save_destination(self, destination: StoredDestination) -> None:
        row = [
            destination.key,
            destination.destination_id,
            destination.type,
            orjson.dumps(destination.config).decode(),
            list(destination.only),
            int(destination.deleted),
            destination.created_at,
            destination.version,
        ]
        self.client.insert(
            "destinations",
            [row],
            column_names=[
                "key",
                "destination_id",
                "type",
                "config",
                "only",
                "deleted",
                "created_at",
                "version",
            ],
        )

    def cursor(self, destination_id: str) -> Cursor | None:
        found = rows(self.client, CURSOR_SQL, destination=destination_id)
        if not found:
            return None
        seq, initial, delivered, dead, updated, version, head, computation, after = found[0][0]
        return Cursor(
            int(seq),
            bool(initial),
            int(delivered),
            int(dead),
            int(updated),
            int(version),
            int(head),
            str(computation),
            str(after),
        )

    def save_cursor(self, destination_id: str, cursor: Cursor) -> Cursor:
        """Write ``cursor`` with a version past the previous one; returns what was written."""
        version = max(now_micros(), cursor.version + 1)
        written = replace(cursor, updated_at=now_micros(), version=version)
        self.client.insert(
            "destination_cursors",
            [
                [
                    destination_id,
                    written.seq,
                    int(written.initial_done),
                    written.delivered,
                    written.dead_lettered,
                    written.updated_at,
                    written.version,
                    written.sync_head,
                    written.sync_computation,
                    written.sync_after,
                ]
            ],
            column_names=[
                "destination_id",
                "seq",
                "initial_done",
                "delivered",
                "dead_lettered",
                "updated_at",
                "version",
                "sync_head",
                "sync_computation",
                "sync_after",
            ],
        )
        return written

    def head(self) -> int:
        """The newest change's seq (0 when there is none)."""
        return int(one(self.client, MAX_SEQ_SQL)[0] or 0)

    # ---- evaluator state ------------------------------------------------------------------

    def evaluator_value(self, name: str) -> int | None:
        found = rows(self.client, EVALUATOR_STATE_SQL, name=name)
        return int(found[0][0]) if found else None

    def set_evaluator_value(self, name: str, value: int) -> None:
        self.client.insert(
            "evaluator_state", [[name, value, now_micros()]], column_names=["name", "value", "version"]
        )


def next_version(previous: int) -> int:
    """A version newer than ``previous`` and than any earlier clock reading."""
    return max(now_micros(), previous + 1)


def stored_for(definition: Definition, previous: StoredDefinition | None = None) -> StoredDefinition:
    """``definition`` as its next stored row: a new computation id when it is new (Engage's
    ``aud_`` / ``tra_`` prefixes), the next revision of ``previous`` otherwise."""
    now = now_micros()
    if previous is None:
        prefix = "aud" if definition.kind == AUDIENCE else "tra"
        return StoredDefinition(definition, f"{prefix}_{secrets.token_hex(12)}", 1, now, now, now)
    return StoredDefinition(
        definition,
        previous.computation_id,
        previous.revision + 1,
        previous.created_at,
        now,
        next_version(previous.version),
    )
