"""Segment calls -> the rows Feedhouse's pipeline would write, without Kafka: for read-API tests and benches.

:class:`OfflinePipeline` runs the real pure stages in one process, in arrival order:

``gateway.normalize`` (validation, clock-skew rule) -> the ``events`` row builder
(``clickhouse.tables``) -> ``streams.router.commands_for`` (identity commands, repeated claims
skipped like the router's cache) -> the identity workers' ``GraphProcessor`` / ``StateProcessor`` (mapping and
state records, one per change, stale rows included; each changed profile's ids) -> the tables'
row builders (rows).

So the tables hold what the deployed pipeline produces for the same calls, including the
superseded versions a ReplacingMergeTree keeps until it merges. Rows are buffered and inserted
with ``client.insert`` (column data) by :meth:`OfflinePipeline.flush`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse import tables
from feedhouse.clickhouse.tables import Row
from feedhouse.gateway.normalize import normalize as normalize_call
from feedhouse.gateway.normalize import parse_time
from feedhouse.ids import DEFAULT_PLACEHOLDER_IDS
from feedhouse.streams.graph_agent import GraphProcessor
from feedhouse.streams.router import GRAPH, PairCache, commands_for, version_of
from feedhouse.streams.state_agent import StateProcessor

TABLES = {
    table.name: table
    for table in (
        tables.EVENTS,
        tables.ID_MAPPING,
        tables.PROFILE_MEMBERS,
        tables.ID_STATE,
        tables.GROUP_STATE,
    )
}
RECEIVE_DELAY_MICROS = 80_000  # receivedAt = event time + network delay, for calls without one


class OfflinePipeline:
    """Feeds Segment calls through the pipeline's pure stages; buffers the resulting rows."""

    def __init__(self, placeholders: Iterable[str] = DEFAULT_PLACEHOLDER_IDS) -> None:
        self.placeholders = frozenset(placeholders)
        self.nodes: dict[str, Any] = {}
        self.graph = GraphProcessor(self.nodes)
        self.states = StateProcessor({}, {})
        self.claims = PairCache()
        self.offset = 0
        self.rows: dict[str, list[Row]] = {table: [] for table in TABLES}
        self.build = {
            name: table.row_builder(placeholders=self.placeholders) for name, table in TABLES.items()
        }

    def add(self, call: Mapping[str, Any], received_at: int | None = None) -> dict[str, Any]:
        """One Segment call (as an SDK sends it); returns its normalised event record."""
        if received_at is None:
            stamp = call.get("timestamp")
            base = parse_time(stamp, "timestamp") if isinstance(stamp, str) else 1_767_225_600_000_000
            received_at = base + RECEIVE_DELAY_MICROS
        record = normalize_call(dict(call), event_type=None, received_at=received_at, source_id="bench")
        self.add_record(record)
        return record

    def add_record(self, record: Mapping[str, Any]) -> None:
        """One event record (``avro/schemas/event``): its row and its identity consequences."""
        self.offset += 1
        self.rows["events"].append(self.build["events"](record))
        for position, command in enumerate(commands_for(record, self.placeholders)):
            fields = command.record
            version = version_of(self.offset, position)
            if command.topic == GRAPH:
                if fields["kind"] == "claim" and self.claims.covers(
                    (fields["id"], fields["target"]), (fields["timestamp"], fields["messageId"])
                ):
                    continue
                self.rows["id_mapping"] += map(self.build["id_mapping"], self.graph.apply(fields, version))
                members = self.graph.take_memberships()
                self.rows["profile_members"] += map(self.build["profile_members"], members)
                continue
            result = self.states.apply(fields, version)
            if result is not None:
                kind, output = result
                if kind == "group":
                    self.rows["group_state"].append(self.build["group_state"](output))
                else:
                    self.rows["id_state"].append(self.build["id_state"](output))

    def pending(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def flush(self, client: Client, chunk: int = 100_000) -> None:
        """Insert every buffered row (column-oriented, like the sink) and clear the buffers."""
        for table, description in TABLES.items():
            rows = self.rows[table]
            for start in range(0, len(rows), chunk):
                data = list(zip(*rows[start : start + chunk], strict=True))
                client.insert(
                    table,
                    data,
                    column_names=list(description.column_names),
                    column_oriented=True,
                    # Bench imports span months; the sink lifts the same limit for events.
                    settings={"max_partitions_per_insert_block": 0},
                )
            rows.clear()
