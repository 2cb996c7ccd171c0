"""Which topic goes to which table: the sink's whole routing table in one place.

Rows are built by each table's compiled row builder (``feedhouse.clickhouse.tables``): the
pure ``process(record) -> row`` half of the sink, derived from the topic's Avro schema. Events
are the exception: the sink hands their datums to ClickHouse (``sink.datums``).
"""

from __future__ import annotations

from dataclasses import dataclass

from feedhouse.avro.codec import AvroCodec
from feedhouse.clickhouse import tables
from feedhouse.clickhouse.tables import RowBuilder, Table
from feedhouse.settings import Settings


@dataclass(frozen=True, slots=True)
class Route:
    """One source topic: how its records are decoded and turned into rows of one table."""

    topic: str  # full topic name (with the prefix)
    table: Table
    codec: AvroCodec
    process: RowBuilder


# Logical topic -> the table it fills (the table knows its schema).
TOPIC_TABLES: dict[str, Table] = {
    "events": tables.EVENTS,
    "rejected": tables.REJECTED_EVENTS,
    "identity-mapping": tables.ID_MAPPING,
    "identity-profiles": tables.PROFILE_MEMBERS,
    "identity-state": tables.ID_STATE,
    "identity-groups": tables.GROUP_STATE,
}


def routes(settings: Settings) -> dict[str, Route]:
    """Routes by full topic name, for every topic the sink consumes."""
    bound = {"placeholders": settings.placeholder_ids}
    return {
        settings.topic(name): Route(
            settings.topic(name), table, AvroCodec(table.schema), table.row_builder(**bound)
        )
        for name, table in TOPIC_TABLES.items()
    }
