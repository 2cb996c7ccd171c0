"""Cluster mode, as generated SQL: every migration rewrites to replicated local tables behind
Distributed ones, keyed so that what ReplacingMergeTree collapses and what a view writes stay on
one shard."""

from __future__ import annotations

import re

import pytest

from feedhouse.clickhouse.cluster import SHARD_KEYS, ClusterError, for_cluster, local_statement
from feedhouse.clickhouse.migrate import discover, render, split_statements, statements
from feedhouse.settings import SettingsError, load

DB = "`fh`"
CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS `fh`\.(\w+)")
ENGINE = re.compile(r"ENGINE\s*=\s*(\w+)")
VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS `fh`\.\w+ TO `fh`\.(\w+) AS\s.*?\bFROM `fh`\.(\w+)", re.S
)


def single_node() -> list[str]:
    return [s for m in discover() for s in statements(m.up, "fh")]


def in_cluster() -> list[str]:
    return [s for m in discover() for s in statements(m.up, "fh", "events_cluster")]


def sharded_tables() -> dict[str, str]:
    """table -> its CREATE statement, for the tables cluster mode shards: the MergeTree family
    and the key-value mirrors."""
    found = {}
    for statement in single_node():
        name = CREATE.search(statement)
        engine = ENGINE.search(statement)
        if name and engine and engine.group(1).endswith(("MergeTree", "EmbeddedRocksDB")):
            found[name.group(1)] = statement
    return found


def test_every_sharded_table_has_a_shard_key_over_its_own_columns() -> None:
    tables = sharded_tables()
    assert set(tables) <= set(SHARD_KEYS), f"no shard key for {sorted(set(tables) - set(SHARD_KEYS))}"
    for table, statement in tables.items():
        source = re.search(r"AS `fh`\.(\w+)", statement)
        text = statement + (tables[source.group(1)] if source else "")
        for column in re.findall(r"cityHash64\((\w+)\)", SHARD_KEYS[table]):
            assert re.search(rf"\b{column}\b", text), f"{table}: shard key column {column} is not a column"


def test_a_view_writes_to_a_table_sharded_like_its_source() -> None:
    views = [VIEW.search(s) for s in single_node()]
    pairs = [(found.group(1), found.group(2)) for found in views if found]
    assert len(pairs) >= 9, pairs
    # person_recency's person_key is id_mapping's id (the tombstones' view): one hash of one value.
    same = {("person_recency", "id_mapping"): ("cityHash64(person_key)", "cityHash64(id)")}
    for target, source in pairs:
        expected = same.get((target, source), (SHARD_KEYS[source], SHARD_KEYS[source]))
        assert (SHARD_KEYS[target], SHARD_KEYS[source]) == expected, f"{source} -> {target}"


def test_cluster_mode_rewrites_every_statement_on_the_cluster() -> None:
    generated = in_cluster()
    tables = sharded_tables()
    for statement in generated:
        if statement.lstrip().startswith(("CREATE", "DROP")):
            assert "ON CLUSTER 'events_cluster'" in statement, statement[:120]
        assert not re.search(r"ENGINE = (?!Replicated|Distributed|Memory|EmbeddedRocksDB)\w+", statement), (
            statement[:200]
        )
    distributed = {re.search(r"`fh`\.(\w+) ON", s).group(1) for s in generated if "Distributed(" in s}  # type: ignore[union-attr]
    assert distributed == set(tables)
    local = {m.group(1) for s in generated if (m := re.search(r"`fh`\.(\w+)_local ON CLUSTER", s))}
    assert local == set(tables)


def test_the_events_table_as_generated() -> None:
    events = next(m for m in discover() if m.name == "events")
    local, distributed = for_cluster(split_statements(render(events.up, "fh"))[0], "c1")
    assert local.startswith(
        "CREATE TABLE IF NOT EXISTS `fh`.events_local ON CLUSTER 'c1'\n(\n    message_id String"
    )
    assert "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}'," in local
    assert "'{replica}', received_at)" in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS `fh`.events ON CLUSTER 'c1' AS `fh`.events_local"
        " ENGINE = Distributed('c1', `fh`, 'events_local', cityHash64(person_key))"
    )


def test_a_key_value_mirror_is_local_to_each_server_behind_a_distributed_table() -> None:
    mirror = next(m for m in discover() if m.name == "key_value_state")
    generated = [
        s for statement in split_statements(render(mirror.up, "fh")) for s in for_cluster(statement, "c1")
    ]
    local, distributed = generated[0], generated[1]
    assert local.startswith("CREATE TABLE IF NOT EXISTS `fh`.id_mapping_kv_local ON CLUSTER 'c1'")
    assert "ENGINE = EmbeddedRocksDB" in local and "Replicated" not in local
    assert distributed == (
        "CREATE TABLE IF NOT EXISTS `fh`.id_mapping_kv ON CLUSTER 'c1' AS `fh`.id_mapping_kv_local"
        " ENGINE = Distributed('c1', `fh`, 'id_mapping_kv_local', cityHash64(id))"
    )
    view = generated[2]
    assert "TO `fh`.id_mapping_kv_local AS" in view
    assert "FROM `fh`.id_mapping_local" in view and "JOIN `fh`.id_mapping_kv_local AS stored" in view


def test_views_read_and_write_local_tables() -> None:
    statement = (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `fh`.x_mv TO `fh`.id_state_by_group AS"
        " SELECT id FROM `fh`.id_state"
    )
    assert for_cluster(statement, "c1") == [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS `fh`.x_mv ON CLUSTER 'c1' TO `fh`.id_state_by_group_local AS"
        " SELECT id FROM `fh`.id_state_local"
    ]


def test_down_files_drop_both_tables() -> None:
    for migration in discover():
        if migration.down is None:
            continue
        for statement in statements(migration.down, "fh", "c1"):
            assert "ON CLUSTER 'c1'" in statement or statement.startswith("INSERT"), statement
    assert for_cluster("DROP TABLE IF EXISTS `fh`.events", "c1") == [
        "DROP TABLE IF EXISTS `fh`.events ON CLUSTER 'c1'",
        "DROP TABLE IF EXISTS `fh`.events_local ON CLUSTER 'c1'",
    ]


def test_deletes_and_mutations_address_the_local_tables() -> None:
    assert local_statement("DELETE FROM events WHERE person_key IN {ids:Array(String)}", "c1") == (
        "DELETE FROM events_local ON CLUSTER 'c1' WHERE person_key IN {ids:Array(String)}"
    )
    assert local_statement("ALTER TABLE `fh`.`events` MODIFY TTL toDateTime(timestamp)", "c1") == (
        "ALTER TABLE `fh`.events_local ON CLUSTER 'c1' MODIFY TTL toDateTime(timestamp)"
    )
    assert for_cluster("OPTIMIZE TABLE `fh`.person_recency FINAL", "c1") == [
        "OPTIMIZE TABLE `fh`.person_recency_local ON CLUSTER 'c1' FINAL"
    ]
    with pytest.raises(ClusterError, match="not an ALTER, DELETE or OPTIMIZE of a sharded table"):
        local_statement("DELETE FROM audience_scope WHERE 1", "c1")


def test_a_stored_column_is_added_to_the_distributed_table_too() -> None:
    change = " ADD COLUMN IF NOT EXISTS sync_head UInt64 DEFAULT 0"
    assert for_cluster(f"ALTER TABLE `fh`.destination_cursors{change}", "c1") == [
        f"ALTER TABLE `fh`.destination_cursors_local ON CLUSTER 'c1'{change}",
        f"ALTER TABLE `fh`.destination_cursors ON CLUSTER 'c1'{change}",
    ]
    dropped = "ALTER TABLE `fh`.destination_cursors DROP COLUMN IF EXISTS sync_head"
    assert len(for_cluster(dropped, "c1")) == 2
    # A column serving the local table's own views stays there.
    ephemeral = " ADD COLUMN IF NOT EXISTS tomb UInt8 EPHEMERAL 0"
    assert for_cluster(f"ALTER TABLE `fh`.person_recency{ephemeral}", "c1") == [
        f"ALTER TABLE `fh`.person_recency_local ON CLUSTER 'c1'{ephemeral}"
    ]


def test_unknown_statements_and_bad_cluster_names_are_refused() -> None:
    with pytest.raises(ClusterError, match="cannot rewrite"):
        for_cluster("SYSTEM STOP MERGES `fh`.events", "c1")
    with pytest.raises(ClusterError, match="cluster name"):
        for_cluster("DROP VIEW IF EXISTS `fh`.v", "c1'; DROP TABLE x; --")
    with pytest.raises(ClusterError, match="no shard key"):
        for_cluster("CREATE TABLE IF NOT EXISTS `fh`.mystery (a UInt8) ENGINE = MergeTree ORDER BY a", "c1")


def test_cluster_mode_needs_a_clickhouse_server() -> None:
    with pytest.raises(SettingsError, match="FEEDHOUSE_CLICKHOUSE_CLUSTER needs a ClickHouse server"):
        load({"FEEDHOUSE_CLICKHOUSE_CLUSTER": "c1"})
    clustered = load({"FEEDHOUSE_CLICKHOUSE_CLUSTER": "c1", "FEEDHOUSE_CLICKHOUSE_URL": "http://ch:8123"})
    assert clustered.clickhouse_cluster == "c1"


def test_a_memory_table_is_altered_on_every_server() -> None:
    scope = next(m for m in discover() if m.name == "scope_masks")
    (statement,) = split_statements(render(scope.up, "fh"))
    assert for_cluster(statement, "c1") == [
        "ALTER TABLE `fh`.audience_scope ON CLUSTER 'c1' ADD COLUMN IF NOT EXISTS mask UInt64"
        " DEFAULT 18446744073709551615"
    ]
