"""Which topic goes to which table: the sink's whole routing table in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from avro.codec import AvroCodec
from feedhouse.settings import Settings
from sink import processors
from sink.processors import Row


@dataclass(frozen=True, slots=True)
class Route:
    """One source topic: how its records are decoded and turned into rows of one table."""

    topic: str  # full topic name (with the prefix)
    table: str
    columns: tuple[str, ...]
    codec: AvroCodec
    process: Callable[[Mapping[str, Any]], Row]


def routes(settings: Settings) -> dict[str, Route]:
    """Routes by full topic name, for every topic the sink consumes."""
    table = [
        ("events", "event", "events", processors.EVENT_COLUMNS, _events(settings)),
        ("rejected", "rejected", "rejected_events", processors.REJECTED_COLUMNS, processors.process_rejected),
        (
            "identity-mapping",
            "id_mapping",
            "id_mapping",
            processors.ID_MAPPING_COLUMNS,
            processors.process_id_mapping,
        ),
        ("identity-state", "id_state", "id_state", processors.ID_STATE_COLUMNS, processors.process_id_state),
        (
            "identity-groups",
            "group_state",
            "group_state",
            processors.GROUP_STATE_COLUMNS,
            processors.process_group_state,
        ),
    ]
    return {
        settings.topic(name): Route(settings.topic(name), table_name, columns, AvroCodec(schema), process)
        for name, schema, table_name, columns, process in table
    }


def _events(settings: Settings) -> Callable[[Mapping[str, Any]], Row]:
    return partial(processors.process_event, placeholders=settings.placeholder_ids)
