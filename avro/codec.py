"""The one Avro codec: Avro single-object encoding with the schema's CRC-64-AVRO fingerprint.

Every record on a Feedhouse topic starts with the two marker bytes ``C3 01`` and the 8-byte
little-endian fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary
body (https://avro.apache.org/docs/1.11.1/specification/#single-object-encoding). A reader looks
the fingerprint up among every version of the schema it knows (``<name>.v<N>.avsc``), and
resolves the writer's schema against the newest one, so producers and consumers can be upgraded
independently as long as each change is backward compatible (new fields carry defaults).
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from feedhouse.avro.flat import FlatDecodeError, compile_flat_reader, compile_flat_writer

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
MARKER = b"\xc3\x01"
HEADER_SIZE = 10
_VERSIONED = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


class AvroDecodeError(ValueError):
    """Bytes that are not a single-object-encoded record of a known schema version."""


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint used in single-object encoding."""
    canonical = to_parsing_canonical_form(parse_schema(dict(schema)))
    return struct.pack("<Q", int(fingerprint(canonical, "CRC-64-AVRO"), 16))


def load_versions(name: str, schema_dir: Path = SCHEMA_DIR) -> dict[int, dict[str, Any]]:
    """Every version of schema ``name`` found in ``schema_dir``, by version number."""
    versions: dict[int, dict[str, Any]] = {}
    for path in schema_dir.glob(f"{name}.v*.avsc"):
        match = _VERSIONED.match(path.name)
        if match and match["name"] == name:
            versions[int(match["version"])] = json.loads(path.read_text())
    if not versions:
        raise FileNotFoundError(f"no schema {name}.v<N>.avsc in {schema_dir}")
    return versions


def newest_schema(name: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The newest version of schema ``name``, as written in its ``.avsc`` file."""
    versions = load_versions(name, schema_dir)
    return versions[max(versions)]


class AvroCodec:
    """Encodes records with the newest version of a schema and decodes any known version.

    Schemas are parsed once, at construction; ``encode``/``decode`` do no schema work.
    """

    def __init__(self, name: str, schema_dir: Path = SCHEMA_DIR) -> None:
        versions = load_versions(name, schema_dir)
        self.name = name
        self.version = max(versions)
        self.raw_schema = versions[self.version]
        self.schema = parse_schema(self.raw_schema)
        self.fingerprint = schema_fingerprint(versions[self.version])
        self._header = self.fingerprint_header = MARKER + self.fingerprint
        # fingerprint -> parsed writer schema, for every version this process knows.
        self._writers = {schema_fingerprint(raw): parse_schema(raw) for raw in versions.values()}
        self._current_writer = self._writers[self.fingerprint]
        self._flat = compile_flat_writer(versions[self.version])
        self._flat_reader = compile_flat_reader(versions[self.version])

    def encode(self, record: Mapping[str, Any]) -> bytes:
        if self._flat is not None:
            return self._header + self._flat(record)
        buffer = io.BytesIO()
        buffer.write(self._header)
        schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_SIZE or data[:2] != MARKER:
            raise AvroDecodeError("not Avro single-object encoding (missing C3 01 marker)")
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise AvroDecodeError(
                f"unknown {self.name} schema fingerprint {data[2:HEADER_SIZE].hex()}: "
                "written by a newer producer? deploy the schema to this consumer first"
            )
        if writer is self._current_writer and self._flat_reader is not None:
            try:
                return self._flat_reader(data, HEADER_SIZE)
            except (IndexError, UnicodeDecodeError, FlatDecodeError) as exc:
                raise AvroDecodeError(f"corrupt {self.name} record: {exc!r}") from exc
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_SIZE)
        reader = None if writer is self._current_writer else self.schema
        try:
            record = schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # fastavro raises many types on truncated / corrupt bodies
            raise AvroDecodeError(f"corrupt {self.name} record: {exc!r}") from exc
        if not isinstance(record, dict):
            raise AvroDecodeError(f"{self.name} record decoded to {type(record).__name__}")
        return record
