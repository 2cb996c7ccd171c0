"""Avro object container files (the ``Avro`` input format of ClickHouse), built from datums.

The sink hands ClickHouse the events' Avro datums as they came from Kafka, so that ClickHouse,
not Python, decodes every field (``docs/benchmarks.md``, "Sink"). A container is a header (the
schema, no compression) and one block of datums: concatenated bytes, no per-field work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from feedhouse.avro.flat import write_long

MAGIC = b"Obj\x01"


def _bytes(value: bytes) -> bytes:
    return write_long(len(value)) + value


class ContainerWriter:
    """Containers of one schema: :meth:`container` wraps datums encoded with ``schema``."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.sync = os.urandom(16)
        metadata = (
            write_long(2)
            + _bytes(b"avro.schema")
            + _bytes(orjson.dumps(schema))
            + _bytes(b"avro.codec")
            + _bytes(b"null")
            + write_long(0)
        )
        self.header = MAGIC + metadata + self.sync

    def container(self, datums: Sequence[bytes]) -> bytes:
        """One container file holding ``datums`` (each a complete record of the schema)."""
        body = b"".join(datums)
        return b"".join((self.header, write_long(len(datums)), write_long(len(body)), body, self.sync))
