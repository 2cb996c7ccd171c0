"""Cluster mode of the migrations: the same files, rewritten for a sharded, replicated ClickHouse.

With ``FEEDHOUSE_CLICKHOUSE_CLUSTER`` naming a cluster of the server's ``remote_servers``,
every statement of a migration goes through :func:`for_cluster` once rendered (pure: text in,
text out, tested as generated SQL). For each table of the MergeTree family ``T``:

* ``T_local`` holds the rows: ``Replicated<engine>('/clickhouse/tables/{shard}/{database}/{table}',
  '{replica}', <the engine's own arguments>)``, created ``ON CLUSTER`` (every shard, every
  replica; the macros come from each server's config);
* ``T`` is a ``Distributed`` table over the ``T_local`` of every shard, sharded by
  :data:`SHARD_KEYS`: everything that reads or inserts ``T`` (the sink, the read side, the
  analyst views) is unchanged.

Materialized views read and write the ``_local`` tables (they run where the insert lands), so a
view's target must be sharded like its source: the rows a ReplacingMergeTree collapses must be
on one shard (a test checks both). Views, drops and ``ALTER`` run ``ON CLUSTER``; ``ALTER`` and
lightweight ``DELETE`` address the ``_local`` tables (:func:`local_statement`), which a
Distributed table does not support, except that a stored column added or dropped is added to or
dropped from the Distributed table as well. Memory tables (the evaluator's scratch table) stay one per
server. Reading joins of two Distributed tables needs ``distributed_product_mode = 'global'``
(set by the client factory in cluster mode): docs/scaling.md.
"""

from __future__ import annotations

import re

LOCAL = "_local"
ZOOKEEPER_PATH = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

# How each table's rows are spread over shards. Every row a ReplacingMergeTree may collapse (same
# ordering key) must land on one shard, and a materialized view's target is keyed like its
# source, since the view writes where the source's insert landed.
SHARD_KEYS: dict[str, str] = {
    # events, sharded by person: a timeline is one shard's read
    "events": "cityHash64(person_key)",
    "events_by_person_time": "cityHash64(person_key)",
    "events_by_time": "cityHash64(person_key)",
    "person_recency": "cityHash64(person_key)",
    "person_seen_kv": "cityHash64(person_key)",  # a key-value mirror, filled where events land
    "rejected_events": "rand()",  # plain MergeTree: nothing collapses
    # identity, sharded by id
    "id_mapping": "cityHash64(id)",
    "id_mapping_by_profile": "cityHash64(id)",
    "id_state": "cityHash64(id)",
    "id_state_by_group": "cityHash64(id)",
    "id_state_by_trait": "cityHash64(id)",
    "id_state_by_audience": "cityHash64(id)",
    "id_mapping_kv": "cityHash64(id)",  # key-value mirrors, filled where their source's insert lands
    "id_state_kv": "cityHash64(id)",
    "profile_members": "cityHash64(profile_id)",  # the graph's record per profile, and its mirror
    "profile_members_kv": "cityHash64(profile_id)",
    "group_state": "cityHash64(group_id)",
    # audiences and computed traits
    "definitions": "cityHash64(key)",
    "computation_status": "cityHash64(computation_id)",
    "destinations": "cityHash64(key)",
    "destination_cursors": "cityHash64(destination_id)",
    "evaluator_state": "cityHash64(name)",
    "computed_changes": "cityHash64(profile_id)",
    "computed_current": "cityHash64(profile_id)",
    "computed_by_profile": "cityHash64(profile_id)",
    # privacy, bookkeeping
    "deleted_ids": "cityHash64(id)",
    "regulations": "cityHash64(id)",
    "schema_migrations": "version",
}
_DB = r"(?P<db>`[^`]+`)"  # rendered: the backquoted database name
_LEADING_COMMENTS = re.compile(r"^(?:\s*--[^\n]*\n|\s*/\*.*?\*/)*\s*", re.S)
_CREATE_TABLE = re.compile(rf"^CREATE TABLE IF NOT EXISTS {_DB}\.(?P<table>\w+)(?P<rest>.*)$", re.S)
_ENGINE = re.compile(r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^()]*)\))?")
_KEY_VALUE = re.compile(r"ENGINE\s*=\s*EmbeddedRocksDB\b")
_AS_TABLE = re.compile(r"^\s*AS (?P<db>`[^`]+`)\.(?P<source>\w+)")
_CREATE_MV = re.compile(rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS {_DB}\.(?P<view>\w+)(?P<rest>.*)$", re.S)
_CREATE_VIEW = re.compile(rf"^CREATE OR REPLACE VIEW {_DB}\.(?P<view>\w+)(?P<rest>.*)$", re.S)
_DROP = re.compile(rf"^DROP (?P<kind>TABLE|VIEW) IF EXISTS {_DB}\.(?P<name>\w+)(?P<rest>.*)$", re.S)
_ALTER = re.compile(rf"^ALTER TABLE {_DB}\.(?P<table>\w+)(?P<rest>.*)$", re.S)
# A stored column added, or one dropped if it exists (EPHEMERAL, MATERIALIZED and ALIAS columns
# serve the local tables' own views and stay there).
_STORED_COLUMN = re.compile(
    r"^\s+(?:ADD COLUMN(?!.*\b(?:EPHEMERAL|MATERIALIZED|ALIAS)\b)|DROP COLUMN IF EXISTS)\b", re.S
)
_REFERENCE = re.compile(r"(?P<db>`[^`]+`)\.(?P<name>\w+)\b")


class ClusterError(ValueError):
    """A statement cluster mode does not know how to rewrite."""


def quoted(cluster: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", cluster):
        raise ClusterError(f"cluster name {cluster!r}: letters, digits, '_', '.', '-' only")
    return f"'{cluster}'"


def for_cluster(statement: str, cluster: str) -> list[str]:
    """A rendered migration statement as the statements to run on ``cluster``."""
    on = f"ON CLUSTER {quoted(cluster)}"
    body = _LEADING_COMMENTS.sub("", statement, count=1)
    if match := _CREATE_TABLE.match(body):
        return _create_table(match["db"], match["table"], match["rest"], on, cluster)
    if match := _CREATE_MV.match(body):
        rest = _REFERENCE.sub(_local_reference, match["rest"])
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {match['db']}.{match['view']} {on}{rest}"]
    if match := _CREATE_VIEW.match(body):
        return [f"CREATE OR REPLACE VIEW {match['db']}.{match['view']} {on}{match['rest']}"]
    if match := _DROP.match(body):
        db, name, kind, rest = match["db"], match["name"], match["kind"], match["rest"]
        dropped = [f"DROP {kind} IF EXISTS {db}.{name} {on}{rest}"]
        if kind == "TABLE" and name in SHARD_KEYS:
            dropped.append(f"DROP TABLE IF EXISTS {db}.{name}{LOCAL} {on}{rest}")
        return dropped
    if match := _ALTER.match(body):
        if match["table"] not in SHARD_KEYS:  # a Memory table: one per server, altered on each
            return [f"ALTER TABLE {match['db']}.{match['table']} {on}{match['rest']}"]
        statements = [local_statement(body, cluster)]
        if _STORED_COLUMN.match(match["rest"]):
            # Readers and writers go through the Distributed table: it must show the column too.
            statements.append(f"ALTER TABLE {match['db']}.{match['table']} {on}{match['rest']}")
        return statements
    if body.startswith("OPTIMIZE TABLE"):
        return [local_statement(body, cluster)]  # each replica merges its own parts
    if body.startswith("INSERT INTO"):
        return [statement]  # through the Distributed tables: each row to its shard
    if body.startswith("CREATE DATABASE"):
        return [f"{body} {on}"]
    raise ClusterError(f"cluster mode cannot rewrite: {body[:80]!r}")


def _create_table(db: str, table: str, rest: str, on: str, cluster: str) -> list[str]:
    engine = _ENGINE.search(rest)
    key_value = _KEY_VALUE.search(rest) is not None
    if engine is None and not key_value:  # Memory and friends: one per server, nothing to share
        return [f"CREATE TABLE IF NOT EXISTS {db}.{table} {on}{rest}"]
    if table not in SHARD_KEYS:
        raise ClusterError(f"table {table} has no shard key (clickhouse/cluster.py SHARD_KEYS)")
    if engine is None:
        # A key-value mirror is local to each server (not replicated): its view fills it on the
        # replica the source's insert reached (docs/scaling.md).
        local = rest
    else:
        arguments = ZOOKEEPER_PATH + (f", {engine['args']}" if engine["args"] else "")
        replicated = f"ENGINE = Replicated{engine['engine']}({arguments})"
        local = f"{rest[: engine.start()]}{replicated}{rest[engine.end() :]}"
    local = _AS_TABLE.sub(lambda m: f" AS {m['db']}.{m['source']}{LOCAL}", local)
    return [
        f"CREATE TABLE IF NOT EXISTS {db}.{table}{LOCAL} {on}{local}",
        f"CREATE TABLE IF NOT EXISTS {db}.{table} {on} AS {db}.{table}{LOCAL}"
        f" ENGINE = Distributed({quoted(cluster)}, {db}, '{table}{LOCAL}', {SHARD_KEYS[table]})",
    ]


def _local_reference(match: re.Match[str]) -> str:
    name = match["name"]
    return f"{match['db']}.{name}{LOCAL}" if name in SHARD_KEYS else match[0]


_LOCAL_TARGET = re.compile(
    r"^(?P<verb>ALTER TABLE|DELETE FROM|OPTIMIZE TABLE) "
    r"(?P<db>`[^`]+`\.)?(?P<q>`?)(?P<table>\w+)(?P=q)(?P<rest>.*)$",
    re.S,
)


def local_statement(statement: str, cluster: str) -> str:
    """An ``ALTER TABLE t ...``, ``DELETE FROM t ...`` or ``OPTIMIZE TABLE t ...`` (``t`` bare or
    qualified) addressed to the replicated ``t_local`` tables of every shard: a Distributed table
    takes none of them."""
    match = _LOCAL_TARGET.match(statement.strip())
    if match is None or match["table"] not in SHARD_KEYS:
        raise ClusterError(f"not an ALTER, DELETE or OPTIMIZE of a sharded table: {statement[:80]!r}")
    target = f"{match['db'] or ''}{match['table']}{LOCAL}"
    return f"{match['verb']} {target} ON CLUSTER {quoted(cluster)}{match['rest']}"
