"""A fast writer for flat records (the shape of every Feedhouse schema).

fastavro's generic writer cost about three times what this one does per event record (measured
on this machine), once the single largest cost of ingesting an event. Records whose fields are
strings, ints, longs, booleans, nullable versions of those, or arrays of strings can be written
by a function generated once from the schema; the output is byte-for-byte what fastavro writes
(property tested in tests/unit/avro/test_codec.py). Any other schema shape gets ``None`` and the
codec keeps using fastavro.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

_PRIMITIVES = frozenset({"string", "int", "long", "boolean"})
# Single-byte zig-zag varints for 0..63, the common length of ids and names.
_SMALL = [bytes([n << 1]) for n in range(64)]


def _varint(encoded: int) -> bytes:
    """Base-128 little-endian varint of a non-negative (already zig-zagged) int."""
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


# Varints are written 14 bits at a time: the last group from _TAIL, the ones before it from
# _PAIRS (both bytes flagged "more follows"). A timestamp in µs is four groups instead of eight
# loop turns, each turn a handful of Python operations (``bench.gateway_ab`` measures it).
_TAIL = [_varint(n) for n in range(1 << 14)]
_PAIRS = [bytes([(n & 0x7F) | 0x80, (n >> 7) | 0x80]) for n in range(1 << 14)]


def write_long(value: int) -> bytes:
    """Avro long: zig-zag, then base-128 little-endian varint."""
    if 0 <= value < 64:
        return _SMALL[value]
    encoded = (value << 1) ^ (value >> 63)
    if encoded < 16384:
        return _TAIL[encoded]
    parts = []
    while encoded >= 16384:
        parts.append(_PAIRS[encoded & 0x3FFF])
        encoded >>= 14
    parts.append(_TAIL[encoded])
    return b"".join(parts)


def _field_kind(field_type: Any) -> tuple[bool, str] | None:
    """(nullable, kind) for a supported field type, else None."""
    if isinstance(field_type, str) and field_type in _PRIMITIVES:
        return False, field_type
    if (
        isinstance(field_type, dict)
        and field_type.get("type") == "array"
        and field_type.get("items") == "string"
    ):
        return False, "array<string>"
    if isinstance(field_type, list) and len(field_type) == 2 and field_type[0] == "null":
        inner = _field_kind(field_type[1])
        if inner is not None and not inner[0]:
            return True, inner[1]
    return None


def flat_layout(schema: Mapping[str, Any]) -> list[tuple[str, bool, str]] | None:
    """(name, nullable, kind) per field when ``schema`` is a flat record, else None."""
    if schema.get("type") != "record":
        return None
    layout: list[tuple[str, bool, str]] = []
    for field in schema["fields"]:
        kind = _field_kind(field["type"])
        if kind is None:
            return None
        layout.append((field["name"], kind[0], kind[1]))
    return layout


# The varint of each length below 8 KiB, one lookup (a length n zig-zags to 2n).
_LENGTHS = _TAIL[::2]


def compile_flat_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any]], bytes] | None:
    """A function writing the Avro body of ``schema``'s records, or None if not flat.

    The function's source is generated from the layout, one straight block per field: a loop
    over the layout testing each field's kind took 1.8 times as long per event record
    (``bench.gateway_throughput`` measures the gateway that runs it).
    """
    layout = flat_layout(schema)
    if layout is None:
        return None
    lines = ["def write(record):", "    parts = []", "    add = parts.append", "    get = record.get"]
    for name, nullable, kind in layout:
        lines.append(f"    value = get({name!r})")
        indent = "    "
        if nullable:
            lines += ["    if value is None:", "        add(NULL)", "    else:", "        add(PRESENT)"]
            indent = "        "
        else:
            lines += [
                "    if value is None:",
                f"        raise ValueError({f'field {name} is not nullable'!r})",
            ]
        if kind == "string":
            lines += [
                f"{indent}data = value.encode()",
                f"{indent}size = len(data)",
                f"{indent}add(LENGTHS[size] if size < {len(_LENGTHS)} else write_long(size))",
                f"{indent}add(data)",
            ]
        elif kind == "boolean":
            lines.append(f"{indent}add(TRUE if value else FALSE)")
        elif kind == "array<string>":
            lines += [
                f"{indent}if value:",
                f"{indent}    add(write_long(len(value)))",
                f"{indent}    for item in value:",
                f"{indent}        data = item.encode()",
                f"{indent}        add(write_long(len(data)))",
                f"{indent}        add(data)",
                f"{indent}add(END)",
            ]
        else:  # int / long
            lines.append(f"{indent}add(write_long(int(value)))")
    lines.append("    return b''.join(parts)")
    names: dict[str, Any] = {
        "LENGTHS": _LENGTHS,
        "write_long": write_long,
        "NULL": b"\x00",
        "PRESENT": b"\x02",
        "TRUE": b"\x01",
        "FALSE": b"\x00",
        "END": b"\x00",
    }
    # Field names come from our own schemas, and are written as repr() literals.
    exec(compile("\n".join(lines), f"<flat writer {schema.get('name')}>", "exec"), names)
    writer: Callable[[Mapping[str, Any]], bytes] = names["write"]
    return writer


class FlatDecodeError(ValueError):
    """Bytes that do not hold a record of the schema the reader was compiled for."""


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro zig-zag varint at ``pos``: (value, next position)."""
    shift = 0
    raw = 0
    while True:
        byte = data[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise FlatDecodeError("varint longer than 64 bits")


def compile_flat_reader(schema: Mapping[str, Any]) -> Callable[[bytes, int], dict[str, Any]] | None:
    """A function reading a record body of ``schema`` starting at an offset, or None if not flat.

    It reads records written with exactly this schema; other writer versions need schema
    resolution (fastavro). Raises :class:`FlatDecodeError` (or IndexError on truncation,
    which the codec turns into a decode error) on malformed input.
    """
    layout = flat_layout(schema)
    if layout is None:
        return None

    def read(data: bytes, pos: int) -> dict[str, Any]:
        record: dict[str, Any] = {}
        size = len(data)
        for name, nullable, kind in layout:
            if nullable:
                branch = data[pos]
                pos += 1
                if branch == 0:
                    record[name] = None
                    continue
                if branch != 2:
                    raise FlatDecodeError(f"bad union branch for {name}")
            if kind == "string":
                byte = data[pos]
                if byte < 0x80:
                    length = byte >> 1
                    pos += 1
                    if byte & 1:
                        raise FlatDecodeError(f"negative length for {name}")
                else:
                    length, pos = read_long(data, pos)
                    if length < 0:
                        raise FlatDecodeError(f"negative length for {name}")
                end = pos + length
                if end > size:
                    raise FlatDecodeError(f"truncated {name}")
                record[name] = data[pos:end].decode()
                pos = end
            elif kind == "boolean":
                record[name] = data[pos] == 1
                pos += 1
            elif kind == "array<string>":
                items: list[str] = []
                while True:
                    count, pos = read_long(data, pos)
                    if count == 0:
                        break
                    if count < 0:  # a block with its byte size (allowed by the spec)
                        count = -count
                        _, pos = read_long(data, pos)
                    for _ in range(count):
                        length, pos = read_long(data, pos)
                        end = pos + length
                        if length < 0 or end > size:
                            raise FlatDecodeError(f"truncated {name}")
                        items.append(data[pos:end].decode())
                        pos = end
                record[name] = items
            else:
                record[name], pos = read_long(data, pos)
        if pos != size:
            raise FlatDecodeError(f"{size - pos} bytes after the record")
        return record

    return read
