"""Versioned, idempotent schema migrations: ``clickhouse/migrations/NNNN_name.sql`` (+ ``.down.sql``).

Each file is a list of SQL statements separated by ``;``. ``${db}`` stands for the database
(an identifier, checked and backquoted here; values never go through substitution). Every
statement is idempotent on its own (``IF NOT EXISTS``, ``OR REPLACE``, ``IF EXISTS``), so a
migration interrupted half-way is simply applied again.

What ran is recorded in ``<db>.schema_migrations``: one row per change (applied or reverted),
the newest row per version wins. Only features common to chDB and a ClickHouse server are used.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.client import check_identifier
from feedhouse.clickhouse.cluster import for_cluster

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PLACEHOLDER = "${db}"
_UP = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

log = logging.getLogger(__name__)


class MigrationError(RuntimeError):
    """Migrations cannot be applied or reverted as asked."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered migration: its forward SQL and, when it can be reverted, its down SQL."""

    version: int
    name: str
    up: str
    down: str | None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every migration in ``directory``, by version; versions must be unique."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _UP.match(path.name)
        if match is None:
            if not path.name.endswith(".down.sql"):
                raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
            continue
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        down_path = path.with_name(f"{path.stem}.down.sql")
        found[version] = Migration(
            version,
            match["name"],
            path.read_text(),
            down_path.read_text() if down_path.exists() else None,
        )
    return [found[version] for version in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: split on ``;`` outside quotes and comments, comments kept."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"`":  # quoted string or identifier; backslash escapes the next character
            end = i + 1
            while end < n and sql[end] != char:
                end += 2 if sql[end] == "\\" else 1
            current.append(sql[i : end + 1])
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            current.append(sql[i:end])
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end < 0 else end + 2
            current.append(sql[i:end])
            i = end
        elif char == ";":
            statements.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    statements.append("".join(current))
    return [statement.strip() for statement in statements if _has_code(statement)]


def _has_code(statement: str) -> bool:
    without_comments = re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)
    return bool(without_comments.strip())


def render(sql: str, database: str) -> str:
    """``sql`` with ``${db}`` replaced by the backquoted database name."""
    return sql.replace(PLACEHOLDER, f"`{check_identifier(database)}`")


def applied_versions(client: Client, database: str) -> dict[int, str]:
    """version -> checksum of every migration currently applied to ``database``."""
    _ensure_bookkeeping(client, database)
    result = client.query(
        render(
            "SELECT version, argMax(checksum, changed_at) AS checksum,"
            " argMax(applied, changed_at) AS is_applied FROM ${db}.schema_migrations"
            " GROUP BY version HAVING is_applied = 1 ORDER BY version",
            database,
        )
    )
    return {int(version): str(checksum) for version, checksum, _ in result.result_rows}


def pending(client: Client, database: str, migrations: list[Migration] | None = None) -> list[Migration]:
    """Migrations not applied to ``database`` yet, in order."""
    done = applied_versions(client, database)
    return [m for m in (migrations if migrations is not None else discover()) if m.version not in done]


def migrate(
    client: Client, database: str, migrations: list[Migration] | None = None, *, cluster: str = ""
) -> list[Migration]:
    """Apply every pending migration in order; returns those applied now (empty when up to date).

    With ``cluster``, each statement is rewritten for that ClickHouse cluster first
    (``feedhouse.clickhouse.cluster``)."""
    _ensure_bookkeeping(client, database, cluster)
    known = migrations if migrations is not None else discover()
    done = applied_versions(client, database)
    for migration in known:
        if migration.version in done and done[migration.version] != migration.checksum:
            # Editing an applied migration changes nothing in the database: write a new one.
            log.warning(
                "applied migration changed since",
                extra={"migration": migration.label, "recorded": done[migration.version]},
            )
    todo = [m for m in known if m.version not in done]
    for migration in todo:
        _run(client, migration.up, database, cluster)
        _record(client, database, migration, applied=True)
        log.info("migration applied", extra={"migration": migration.label, "database": database})
    return todo


def rollback(
    client: Client,
    database: str,
    steps: int,
    migrations: list[Migration] | None = None,
    *,
    cluster: str = "",
) -> list[Migration]:
    """Revert the last ``steps`` applied migrations with their down files; returns them, newest first."""
    if steps < 1:
        raise MigrationError("--down needs a positive number of migrations")
    known = {m.version: m for m in (migrations if migrations is not None else discover())}
    done = sorted(applied_versions(client, database), reverse=True)[:steps]
    targets = []
    for version in done:
        migration = known.get(version)
        if migration is None or migration.down is None:
            raise MigrationError(f"migration {version:04d} has no .down.sql file: cannot revert it")
        targets.append(migration)
    for migration in targets:
        assert migration.down is not None
        _run(client, migration.down, database, cluster)
        _record(client, database, migration, applied=False)
        log.info("migration reverted", extra={"migration": migration.label, "database": database})
    return targets


def _ensure_bookkeeping(client: Client, database: str, cluster: str = "") -> None:
    _run(client, "CREATE DATABASE IF NOT EXISTS ${db}", database, cluster)
    _run(
        client,
        """CREATE TABLE IF NOT EXISTS ${db}.schema_migrations
        (
            version UInt32,
            name String,
            checksum String,
            applied UInt8,
            changed_at DateTime64(6, 'UTC')
        )
        ENGINE = ReplacingMergeTree(changed_at)
        ORDER BY version""",
        database,
        cluster,
    )


def statements(sql: str, database: str, cluster: str = "") -> list[str]:
    """What running ``sql`` on ``database`` executes: rendered, split, rewritten for ``cluster``."""
    rendered = split_statements(render(sql, database))
    if not cluster:
        return rendered
    return [out for statement in rendered for out in for_cluster(statement, cluster)]


def _run(client: Client, sql: str, database: str, cluster: str = "") -> None:
    for statement in statements(sql, database, cluster):
        client.command(statement, use_database=False)


def _record(client: Client, database: str, migration: Migration, *, applied: bool) -> None:
    client.insert(
        "schema_migrations",
        [[migration.version, migration.name, migration.checksum, int(applied), time.time_ns() // 1000]],
        column_names=["version", "name", "checksum", "applied", "changed_at"],
        database=database,
    )


def prepare(client: Client, database: str, retention_days: int, cluster: str = "") -> list[Migration]:
    """What every process that owns the schema does at start: migrate, then apply retention."""
    from feedhouse.clickhouse.retention import apply_retention

    done = migrate(client, database, cluster=cluster)
    apply_retention(client, database, retention_days, cluster)
    return done
