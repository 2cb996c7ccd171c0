"""Migrations on real ClickHouse (chDB): idempotent, recorded, reversible, and one command."""

from __future__ import annotations

import re
import subprocess
import sys

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
    latest = discover()[-2:]
    reverted = rollback(clickhouse, database, 2)
    assert [m.version for m in reverted] == [m.version for m in reversed(latest)]
    assert sorted(applied_versions(clickhouse, database)) == [m.version for m in discover()[:-2]]
    assert [m.version for m in pending(clickhouse, database)] == [m.version for m in latest]
    remaining = {name for name, _, _ in schema(clickhouse, database)}
    # Whatever the last two migrations are, the objects they create are gone, the rest stays.
    created = {
        found.group(1)
        for migration in latest
        for found in re.finditer(
            r"CREATE (?:OR REPLACE )?(?:TABLE|MATERIALIZED VIEW|VIEW)(?: IF NOT EXISTS)? \$\{db\}\.(\w+)",
            migration.up,
        )
    }
    assert created and not created & remaining and "events" in remaining

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
