"""The sink: consume Feedhouse's output topics, insert into ClickHouse, then commit.

A :class:`SinkStage` of the shared consume loop (``feedhouse.consume``): events go to ClickHouse
as their own Avro datums (``sink.datums``: ClickHouse decodes them), the other topics' records
are decoded and turned into rows by their table's row builder; a batch is inserted table by
table, and only then are its offsets committed. A crash between insert and commit replays the
batch; the tables are ReplacingMergeTrees read with FINAL/argMax, and retried inserts carry
the same deduplication token, so a replayed row never shows twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Message

from feedhouse import metrics
from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.clickhouse.tables import EVENTS, Row
from feedhouse.consume import Batch, BatchConsumer
from feedhouse.privacy.deletions import DeletedIds, run_once_loaded
from feedhouse.retry import Backoff, Wait
from feedhouse.settings import Settings
from feedhouse.sink.datums import EventDatums
from feedhouse.sink.routes import Route, routes
from feedhouse.sink.writer import TableWriter

GROUP_SUFFIX = "sink"  # group id: <topic prefix>sink, so two installs on one cluster never share it
# Event timestamps come from clients: one batch can span many months (a historical import),
# which ClickHouse refuses by default past 100 partitions per insert.
TABLE_SETTINGS: dict[str, dict[str, object]] = {
    "events": {"max_partitions_per_insert_block": 0},
    "rejected_events": {"max_partitions_per_insert_block": 0},
}

log = logging.getLogger(__name__)


@dataclass(slots=True)
class TableRows:
    """The rows of one table in a batch, each with the message it came from (for dead letters)."""

    rows: list[Row | bytes] = field(default_factory=list)  # bytes: Avro datums (events)
    sources: list[Message] = field(default_factory=list)


Tables = dict[str, TableRows]


# Per table: the fields holding person ids, and the times a deletion is compared with
# (privacy.deletions.dropped): an event's timestamp and receipt, an identity record's update.
# (Events: the scanner's fields, ``feedhouse.avro.event_prefix.SCAN_FIELDS``.)
PERSONAL_FIELDS: dict[str, tuple[tuple[str, ...], str, str | None]] = {
    "id_mapping": (("id", "profileId"), "updatedAt", None),
    "id_state": (("id",), "updatedAt", None),
}


class SinkStage:
    """Decode -> row per topic; a batch's rows inserted table by table (never SQL text).

    Records of deleted people (``deleted``) are not written again: a replayed or re-sunk topic
    cannot bring a deleted person back.
    """

    def __init__(
        self, settings: Settings, client: Client, backoff: Backoff, deleted: DeletedIds | None = None
    ) -> None:
        self.deleted = deleted
        self.routes: dict[str, Route] = routes(settings)
        # Events, the bulk of every batch, go to ClickHouse as the Avro datums they are.
        self.events = EventDatums(settings.placeholder_ids)
        database = database_for(settings)
        self.writers = {
            route.table.name: TableWriter(
                client,
                database,
                route.table.name,
                route.table.column_names,
                settings=TABLE_SETTINGS.get(route.table.name),
                backoff=backoff,
                container=self.events.container if route.table is EVENTS else None,
            )
            for route in self.routes.values()
        }

    def open(self) -> Tables:
        return {}

    def add(self, message: Message, batch: Batch[Tables]) -> None:
        route = self.routes.get(message.topic() or "")
        if route is None:
            return
        if route.table is EVENTS:
            self._add_event(message, batch)
            return
        try:
            record = route.codec.decode(message.value() or b"")
        except Exception as exc:  # AvroDecodeError, and anything a corrupt body provokes
            batch.reject(message, f"decode: {exc}")
            return
        if self.deleted is not None and self._of_deleted(route.table.name, record):
            metrics.child(metrics.DELETED_DROPPED, "sink").inc()
            return
        try:
            row = route.process(record)
        except Exception as exc:  # a record that decodes but cannot become a row
            batch.reject(message, f"process: {type(exc).__name__}: {exc}")
            return
        self._append(batch, route.table.name, row, message)

    def _add_event(self, message: Message, batch: Batch[Tables]) -> None:
        try:
            datum, fields = self.events.datum(message.value() or b"")
        except Exception as exc:  # AvroDecodeError, and anything a corrupt body provokes
            batch.reject(message, f"decode: {exc}")
            return
        if self.deleted is not None and self.deleted.drops_event(fields[:3], fields[3], fields[4]):
            metrics.child(metrics.DELETED_DROPPED, "sink").inc()
            return
        self._append(batch, EVENTS.name, datum, message)

    @staticmethod
    def _append(batch: Batch[Tables], table: str, row: Row | bytes, message: Message) -> None:
        rows = batch.payload.get(table)
        if rows is None:
            rows = batch.payload[table] = TableRows()
        rows.rows.append(row)
        rows.sources.append(message)

    def _of_deleted(self, table: str, record: dict[str, Any]) -> bool:
        fields = PERSONAL_FIELDS.get(table)
        if fields is None or self.deleted is None:
            return False
        ids, time_field, received_field = fields
        return self.deleted.drops_event(
            (record[name] for name in ids),
            record[time_field],
            record[received_field] if received_field else None,
        )

    def write(self, batch: Batch[Tables], wait: Wait) -> None:
        for table, rows in batch.payload.items():
            refused = self.writers[table].write(rows.rows, batch.token(f"sink:{table}"), wait)
            for index, error in refused:
                batch.reject(rows.sources[index], f"insert: {error}")

    def discard(self) -> None:
        pass  # nothing outlives a batch


class Sink:
    """Kafka -> ClickHouse for every table Feedhouse keeps. Run it with :meth:`run`.

    Standalone (``feedhouse sink``) or as a thread of another process: chDB allows one process
    per data directory, so in embedded mode the server process hosts the sink. ``client``
    defaults to the process's ``purpose="sink"`` client, a handle of its own so that inserts
    never queue behind read-API queries.
    """

    def __init__(
        self,
        settings: Settings,
        client: Client | None = None,
        *,
        group_id: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.group_id = group_id or f"{settings.topic_prefix}{GROUP_SUFFIX}"
        backoff = backoff or Backoff()
        self.client = client if client is not None else get_client(settings, purpose="sink")
        self.deleted = DeletedIds(settings)
        self.stage = SinkStage(settings, self.client, backoff, self.deleted)
        self.loop = BatchConsumer(
            settings,
            self.stage,
            component="sink",
            group_id=self.group_id,
            topics=sorted(self.stage.routes),
            max_messages=settings.sink_batch_rows,
            max_seconds=settings.sink_batch_seconds,
            backoff=backoff,
        )
        self.assigned = self.loop.assigned

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then write and commit what was consumed, and return.

        Consuming starts once the deleted ids are known: a replay must not slip past them.
        """
        run_once_loaded(self.deleted, stop, self.loop.run)
