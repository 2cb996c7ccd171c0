"""Migrations on real ClickHouse (chDB): idempotent, recorded, reversible, and one command."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.client import close_clients, database_for
from feedhouse.clickhouse.migrate import (
    MigrationError,
    applied_versions,
    discover,
    migrate,
    pending,
    render,
    rollback,
    split_statements,
)
from feedhouse.settings import Settings
from tests.conftest import ROOT, settings_env

pytestmark = pytest.mark.integration

# The tables and views a migration creates (the names its down file must drop).
CREATED = re.compile(
    r"CREATE (?:TABLE|(?:OR REPLACE |MATERIALIZED )?VIEW) (?:IF NOT EXISTS )?\$\{db\}\.(\w+)"
)


def schema(client: Client, database: str) -> list[tuple[str, str, str]]:
    """Every object and column of ``database``: what a migration run may change."""
    tables = client.query(
        "SELECT name, engine, create_table_query FROM system.tables"
        " WHERE database = {db:String} ORDER BY name",
        parameters={"db": database},
    ).result_rows
    return [(str(name), str(engine), str(ddl)) for name, engine, ddl in tables]


def test_applies_every_migration_then_nothing(ch_client: Client, settings: Settings) -> None:
    database = database_for(settings)
    applied = migrate(ch_client, database)
    assert [m.version for m in applied] == [m.version for m in discover()]
    before = schema(ch_client, database)
    assert migrate(ch_client, database) == []
    assert schema(ch_client, database) == before
    assert pending(ch_client, database) == []
    names = {name for name, _, _ in before}
    assert {
        "events",
        "id_mapping",
        "id_mapping_by_profile",
        "id_state",
        "id_state_by_group",
        "id_state_by_trait",
        "id_state_by_audience",
        "group_state",
        "rejected_events",
        "events_resolved",
        "profiles",
        "audience_membership",
        "groups",
        "events_by_person_time",
        "events_by_time",
        "person_recency",
        "person_seen_kv",
        "profile_members",
        "profile_members_kv",
        "schema_migrations",
    } <= names


def test_every_statement_is_idempotent_on_its_own(clickhouse: Client, settings: Settings) -> None:
    # A migration interrupted half-way is applied again from its first statement.
    database = database_for(settings)
    before = schema(clickhouse, database)
    for migration in discover():
        for statement in split_statements(render(migration.up, database)):
            clickhouse.command(statement)
    assert schema(clickhouse, database) == before


def test_down_reverts_the_last_n_and_up_restores_them(clickhouse: Client, settings: Settings) -> None:
    database = database_for(settings)
    full = schema(clickhouse, database)
    # The newest migrations back to (at least two, and) one that creates tables, so that both
    # settings changes and created tables are reverted and restored.
    every = discover()
    count = max(2, next(n for n in range(1, len(every) + 1) if CREATED.findall(every[-n].up)))
    latest = every[-count:]
    reverted = rollback(clickhouse, database, count)
    assert [m.version for m in reverted] == [m.version for m in reversed(latest)]
    assert sorted(applied_versions(clickhouse, database)) == [m.version for m in every[:-count]]
    assert [m.version for m in pending(clickhouse, database)] == [m.version for m in latest]
    remaining = {name for name, _, _ in schema(clickhouse, database)}
    created = {name for migration in latest for name in CREATED.findall(migration.up)}
    assert created and not created & remaining, f"{sorted(created & remaining)} survived their down files"
    assert "events" in remaining

    assert [m.version for m in migrate(clickhouse, database)] == [m.version for m in latest]
    assert schema(clickhouse, database) == full


def test_everything_down_leaves_only_the_bookkeeping(clickhouse: Client, settings: Settings) -> None:
    database = database_for(settings)
    rollback(clickhouse, database, len(discover()))
    assert [name for name, _, _ in schema(clickhouse, database)] == ["schema_migrations"]
    with pytest.raises(MigrationError):
        rollback(clickhouse, database, 0)


def test_database_name_is_an_identifier_never_sql(ch_client: Client) -> None:
    with pytest.raises(ValueError, match="database name"):
        migrate(ch_client, "x; DROP TABLE y")


def test_the_cli_migrates_and_reverts(settings: Settings) -> None:
    close_clients()  # chDB: one process per data directory, and the CLI is another process
    env = settings_env(settings)

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "feedhouse.cli", "migrate", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    count = len(discover())
    assert f"applied {count} migration(s)" in cli()
    assert "applied 0 migration(s)" in cli()
    assert "reverted 1 migration(s)" in cli("--down", "1")
    assert "applied 1 migration(s)" in cli()


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
        (
            "SELECT ';' AS x; -- a comment; with a semicolon\nSELECT 2",
            ["SELECT ';' AS x", "-- a comment; with a semicolon\nSELECT 2"],
        ),
        ("/* ; */ SELECT `a;b` FROM t;\n-- trailing comment only\n", ["/* ; */ SELECT `a;b` FROM t"]),
        ("SELECT 'it\\'s;'", ["SELECT 'it\\'s;'"]),
    ],
)
def test_statement_splitting(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


def test_migrated_tables_have_the_columns_the_schemas_describe(
    clickhouse: Client, settings: Settings
) -> None:
    """Schema (avro/), table descriptions (clickhouse/tables.py) and migrations agree."""
    from feedhouse.clickhouse.tables import TABLES

    for table in TABLES.values():
        described = {
            str(name): str(kind)
            for name, kind, *_ in clickhouse.query(f"DESCRIBE TABLE {table.name}").result_rows
        }
        for column in table.columns:
            assert column.name in described, (
                f"{table.name}.{column.name}: in the schema, not in the migrations"
            )
            stored = described[column.name]
            if stored.startswith("LowCardinality("):
                stored = stored[len("LowCardinality(") : -1]
            assert stored == column.clickhouse_type, (
                f"{table.name}.{column.name}: migrations say {described[column.name]},"
                f" the schema field needs {column.clickhouse_type}"
            )
        stored_only = set(described) - set(table.column_names)
        # ALIAS columns (JSON views of the String columns) are the only columns no field fills.
        aliases = {
            str(name)
            for name, _, default_kind, *_ in clickhouse.query(f"DESCRIBE TABLE {table.name}").result_rows
            if default_kind == "ALIAS"
        }
        assert stored_only <= aliases, f"{table.name}: columns {sorted(stored_only - aliases)} have no field"


# The schema the first release shipped (migrations 0001-0006): data written under it must read
# back through today's read API once the newer migrations are applied.
FIRST_RELEASE = 6


def test_an_older_data_directory_is_upgraded_in_place_and_reads_back(
    ch_client: Client, settings: Settings
) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from feedhouse.read.api import read_routes
    from tests.support.offline_pipeline import TABLES, OfflinePipeline

    database = database_for(settings)
    migrate(ch_client, database, [m for m in discover() if m.version <= FIRST_RELEASE])
    pipeline = OfflinePipeline()
    for call in (
        {
            "type": "page",
            "messageId": "u1",
            "anonymousId": "dev-9",
            "name": "Home",
            "timestamp": "2026-01-01T10:00:00Z",
        },
        {
            "type": "identify",
            "messageId": "u2",
            "userId": "ann",
            "anonymousId": "dev-9",
            "traits": {"plan": "pro"},
            "timestamp": "2026-01-01T10:01:00Z",
        },
        {
            "type": "track",
            "messageId": "u3",
            "userId": "ann",
            "event": "Paid",
            "timestamp": "2026-01-01T10:02:00Z",
        },
    ):
        pipeline.add(call)
    # Insert only the tables and columns the old schema has, as the old sink would have.
    tables = {str(row[0]) for row in ch_client.query("SHOW TABLES").result_rows}
    for name, table in TABLES.items():
        if name not in tables:
            continue
        existing = {str(row[0]) for row in ch_client.query(f"DESCRIBE TABLE {name}").result_rows}
        keep = [i for i, column in enumerate(table.column_names) if column in existing]
        rows = [[row[i] for i in keep] for row in pipeline.rows[name]]
        if rows:
            ch_client.insert(name, rows, column_names=[table.column_names[i] for i in keep])
    newer = migrate(ch_client, database)
    assert [m.version for m in newer] == [m.version for m in discover() if m.version > FIRST_RELEASE]
    http = TestClient(Starlette(routes=read_routes(settings, lambda: ch_client)))
    headers = {"Authorization": f"Bearer {settings.read_token}"}
    profile = http.get("/v1/profiles/dev-9", headers=headers).json()
    assert profile["id"] == "ann" and profile["traits"] == {"plan": "pro"} and profile["eventCount"] == 3
    timeline = http.get("/v1/profiles/ann/timeline", params={"hidden": "true"}, headers=headers).json()
    assert [event["messageId"] for event in timeline["events"]] == ["u3", "u2", "u1"]


def test_the_read_side_lookup_tables_are_backfilled_from_stored_events(
    clickhouse: Client, settings: Settings
) -> None:
    # Events stored before 0007-0009 existed are in the lookup tables once they are applied.
    from tests.support.offline_pipeline import OfflinePipeline

    database = database_for(settings)
    lookups = {"events_by_person_time", "events_by_time", "person_recency"}
    versions = [m.version for m in discover() if set(CREATED.findall(m.up)) & lookups]
    assert versions == [7, 8, 9], versions
    rollback(clickhouse, database, len([m for m in discover() if m.version >= 7]))
    pipeline = OfflinePipeline()
    for index in range(5):
        pipeline.add({"type": "track", "messageId": f"m{index}", "userId": f"u{index % 2}", "event": "E"})
    pipeline.flush(clickhouse)
    migrate(clickhouse, database)
    counts = {
        table: int(clickhouse.query(f"SELECT count() FROM {table} FINAL").result_rows[0][0])
        for table in lookups
    }
    assert counts == {"events_by_person_time": 5, "events_by_time": 5, "person_recency": 2}, counts
    # ...and the last-seen mirror (migration 0019) from person_recency: one row per person_key.
    seen = clickhouse.query("SELECT person_key FROM person_seen_kv ORDER BY person_key").result_rows
    assert seen == [("u0",), ("u1",)], seen


def test_the_members_of_each_profile_are_rebuilt_from_the_current_mappings(
    clickhouse: Client, settings: Settings
) -> None:
    from datetime import UTC, datetime

    database = database_for(settings)
    rollback(clickhouse, database, len([m for m in discover() if m.version >= 20]))
    mappings = [("a", "u", 1), ("u", "u", 1), ("x", "w", 1), ("w", "w", 1), ("x", "u", 2)]  # x moved
    clickhouse.insert(
        "id_mapping",
        [[i, p, v, [], datetime(2026, 1, 1, tzinfo=UTC)] for i, p, v in mappings],
        column_names=["id", "profile_id", "version", "conflicts", "updated_at"],
    )
    migrate(clickhouse, database)
    found = clickhouse.query("SELECT profile_id, ids, version FROM profile_members_kv ORDER BY 1").result_rows
    assert found == [("u", ["a", "u", "x"], 2), ("w", ["w"], 1)], found


def test_retention_drops_whole_expired_months_and_can_be_lifted(
    clickhouse: Client, settings: Settings
) -> None:
    from feedhouse.clickhouse.retention import RETAINED, apply_retention
    from tests.support.offline_pipeline import OfflinePipeline

    database = database_for(settings)
    pipeline = OfflinePipeline()
    old, recent = "2020-01-15T10:00:00Z", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pipeline.add({"type": "track", "messageId": "old", "userId": "u", "event": "E", "timestamp": old})
    pipeline.add({"type": "track", "messageId": "new", "userId": "u", "event": "E", "timestamp": recent})
    pipeline.flush(clickhouse)
    assert sorted(apply_retention(clickhouse, database, 30)) == sorted(RETAINED)
    for table in ("events", "events_by_person_time", "events_by_time"):
        clickhouse.command(f"ALTER TABLE {table} MATERIALIZE TTL", settings={"mutations_sync": 2})
        kept = clickhouse.query(f"SELECT groupArray(message_id) FROM {table}").result_rows[0][0]
        assert kept == ["new"], f"{table} kept {kept}"
    ddl = clickhouse.query("SELECT create_table_query FROM system.tables WHERE name = 'events'").result_rows[
        0
    ][0]
    assert "TTL" in ddl and "ttl_only_drop_parts = 1" in ddl, ddl
    assert sorted(apply_retention(clickhouse, database, 0)) == sorted(RETAINED)
    ddl = clickhouse.query("SELECT create_table_query FROM system.tables WHERE name = 'events'").result_rows[
        0
    ][0]
    assert " TTL " not in ddl, ddl


def test_every_table_a_deletion_masks_takes_patch_parts_and_retires_them_promptly(
    clickhouse: Client,
) -> None:
    """A table masked by lightweight deletes needs the block columns patch parts address rows
    by, and a prompt cleanup task: else applied patch parts linger for minutes, costing reads."""
    from feedhouse.privacy.executor import MASKS

    masked = sorted(table for table, _, how in MASKS if how == "lightweight")
    found = clickhouse.query(
        "SELECT name, create_table_query FROM system.tables"
        " WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": masked},
    ).result_rows
    ddl = {str(name): str(query) for name, query in found}
    assert sorted(ddl) == masked, f"tables missing: {set(masked) - set(ddl)}"
    needed = (
        "enable_block_number_column = 1",
        "enable_block_offset_column = 1",
        "max_cleanup_delay_period = 2",
    )
    lacking = {table: [s for s in needed if s not in query] for table, query in ddl.items()}
    assert not any(lacking.values()), f"expected {needed} on every masked table, lacking: {lacking}"
