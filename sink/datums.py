"""Events as ClickHouse decodes them: each Kafka record's own Avro datum, its derived columns
appended, wrapped in a container per insert (``feedhouse.avro.container``).

Python reads only the few fields it must (``EventScanner``: the ids and times), so no field of
an event is decoded in Python on the common path; ClickHouse parses the datums in C++. Records
of an older schema version, or with a time outside what a ``DateTime64(6)`` holds (clamped, as
``clickhouse.tables`` documents), take the slow path: decoded, fixed, encoded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feedhouse.avro.codec import HEADER_SIZE, AvroCodec
from feedhouse.avro.container import ContainerWriter
from feedhouse.avro.event_prefix import SCAN_FIELDS, EventScanner
from feedhouse.avro.flat import write_long
from feedhouse.clickhouse.tables import EVENTS, MAX_MICROS, MIN_MICROS, Table, clamp_micros

_TIMESTAMP, _RECEIVED = SCAN_FIELDS.index("timestamp"), SCAN_FIELDS.index("receivedAt")


class EventDatums:
    """Kafka event record -> (datum of the table's container schema, the scanned fields)."""

    def __init__(self, placeholders: frozenset[str], table: Table = EVENTS) -> None:
        self.codec = AvroCodec(table.schema)
        self.scanner = EventScanner(self.codec)
        self.writer = ContainerWriter(table.container_schema())
        self.placeholders = placeholders
        self._derived = []
        for _, function, fields in table.derived:
            if not set(fields) <= set(SCAN_FIELDS):
                raise ValueError(f"derived column needs {fields}, the scanner reads {SCAN_FIELDS}")
            self._derived.append((function, tuple(SCAN_FIELDS.index(f) for f in fields)))

    def datum(self, value: bytes) -> tuple[bytes, list[Any]]:
        """Raises ``AvroDecodeError`` for a record that is no event of a known version."""
        if value[:HEADER_SIZE] != self.scanner.header:
            value = self.codec.encode(self.codec.decode(value))  # another version: as the newest
        fields = self.scanner.scan(value)
        timestamp, received = fields[_TIMESTAMP], fields[_RECEIVED]
        if not (MIN_MICROS <= timestamp <= MAX_MICROS and MIN_MICROS <= received <= MAX_MICROS):
            record = self.codec.decode(value)
            record["timestamp"], record["receivedAt"] = clamp_micros(timestamp), clamp_micros(received)
            value = self.codec.encode(record)
        parts = [value[HEADER_SIZE:]]
        for function, indexes in self._derived:
            derived = function(*[fields[i] for i in indexes], placeholders=self.placeholders).encode()
            parts += (write_long(len(derived)), derived)
        return b"".join(parts), fields

    def container(self, datums: Sequence[bytes]) -> bytes:
        return self.writer.container(datums)
