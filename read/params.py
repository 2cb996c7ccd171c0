"""Read-API request parameters: strict parsing, every refusal a 400 naming the parameter.

Cursors are opaque to clients: URL-safe base64 of a small JSON array ``[kind, ...position]``.
A cursor of one kind (event positions ``e``, profile ids ``p``) is refused by endpoints of the
other, and a position is checked like any other input before it reaches a query.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from feedhouse.clickhouse.tables import MAX_MICROS, MIN_MICROS
from feedhouse.gateway.normalize import EVENT_TYPES, MAX_ID_CHARS, Rejection, parse_time
from feedhouse.http import HttpError

EVENT_CURSOR = "e"
PROFILE_CURSOR = "p"
RECENCY_CURSOR = "r"  # the people list by last seen: (last seen µs, id)
MAX_CURSOR_CHARS = 4096
MAX_TRAIT_FILTERS = 10
MAX_NAME_CHARS = 1024  # event names, trait names and values, audience keys


def invalid(name: str, message: str) -> HttpError:
    """The 400 every bad parameter gets; ``message`` starts with the parameter's name."""
    return HttpError(400, "invalid_parameter", f"{name}: {message}")


def checked_text(value: str, name: str, limit: int = MAX_ID_CHARS) -> str:
    """``value`` if it is a usable, non-empty string of at most ``limit`` characters."""
    if not value:
        raise invalid(name, "must not be empty")
    if len(value) > limit:
        raise invalid(name, f"must be at most {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(name, "must be valid Unicode text") from None
    return value


class Params:
    """A request's query string, refusing unknown names and repeated single-valued ones."""

    def __init__(self, query: QueryParams, allowed: Iterable[str], prefixes: Iterable[str] = ()) -> None:
        self.query = query
        allowed = frozenset(allowed)
        prefixes = tuple(prefixes)
        for name in query:
            if name not in allowed and not any(name.startswith(prefix) for prefix in prefixes):
                raise invalid(name or "(empty name)", "unknown parameter")

    def single(self, name: str) -> str | None:
        values = self.query.getlist(name)
        if len(values) > 1:
            raise invalid(name, "must be given once")
        return values[0] if values else None

    def limit(self, default: int, maximum: int) -> int:
        raw = self.single("limit")
        if raw is None:
            return default
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= maximum:
            raise invalid("limit", f"must be an integer from 1 to {maximum}")
        return int(raw)

    def flag(self, name: str) -> bool:
        raw = self.single(name)
        if raw is None:
            return False
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise invalid(name, "must be true or false")

    def types(self) -> tuple[str, ...]:
        """``type``: Segment types, comma-separated and/or repeated."""
        found: list[str] = []
        for raw in self.query.getlist("type"):
            for part in raw.split(","):
                kind = part.strip()
                if kind not in EVENT_TYPES:
                    raise invalid("type", f"must list Segment types ({', '.join(sorted(EVENT_TYPES))})")
                found.append(kind)
        return tuple(dict.fromkeys(found))

    def events(self) -> tuple[str, ...]:
        """``event``: track event names; repeat the parameter for several (names may hold commas)."""
        names = [checked_text(raw, "event", MAX_NAME_CHARS) for raw in self.query.getlist("event")]
        return tuple(dict.fromkeys(names))

    def text(self, name: str) -> str:
        raw = self.single(name)
        return "" if raw is None else checked_text(raw, name, MAX_NAME_CHARS)

    def traits(self) -> tuple[tuple[str, str], ...]:
        """``trait.<name>=<value>`` filters, each trait at most once."""
        found: dict[str, str] = {}
        for name, value in self.query.multi_items():
            if not name.startswith("trait."):
                continue
            trait = checked_text(name.removeprefix("trait."), name, MAX_NAME_CHARS)
            if trait in found:
                raise invalid(name, "must be given once")
            found[trait] = checked_text(value, name, MAX_NAME_CHARS)
        if len(found) > MAX_TRAIT_FILTERS:
            raise invalid("trait.*", f"at most {MAX_TRAIT_FILTERS} trait filters")
        return tuple(found.items())

    def time(self, name: str) -> int | None:
        """An ISO-8601 date or timestamp (naive = UTC) as epoch microseconds, within storable times."""
        raw = self.single(name)
        if raw is None or not raw.strip():
            return None
        if len(raw) > 64:
            raise invalid(name, "must be an ISO-8601 date or timestamp")
        try:
            value = parse_time(raw, name)
        except Rejection:
            raise invalid(name, "must be an ISO-8601 date or timestamp") from None
        return min(max(value, MIN_MICROS), MAX_MICROS)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        raw = self.single(name)
        if raw is None:
            return default
        if raw not in choices:
            raise invalid(name, f"must be one of {', '.join(choices)}")
        return raw

    def names(self, name: str) -> tuple[str, ...]:
        """A comma-separated list of names (trait keys, event names), each checked."""
        raw = self.single(name)
        if raw is None:
            return ()
        parts = [part.strip() for part in raw.split(",") if part.strip()]
        if len(parts) > 100:
            raise invalid(name, "lists at most 100 names")
        return tuple(dict.fromkeys(checked_text(part, name, MAX_NAME_CHARS) for part in parts))

    def cursor(self, kind: str) -> list[Any] | None:
        raw = self.single("cursor")
        return None if raw is None else decode_cursor(raw, kind)


def encode_cursor(kind: str, *position: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([kind, *position])).decode().rstrip("=")


def decode_cursor(raw: str, kind: str) -> list[Any]:
    """The position a cursor of ``kind`` holds; 400 for anything else."""
    if not raw or len(raw) > MAX_CURSOR_CHARS:
        raise invalid("cursor", "is not a cursor from this API")
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise invalid("cursor", "is not a cursor from this API") from None
    if not isinstance(decoded, list) or not decoded or decoded[0] != kind:
        raise invalid("cursor", "is not a cursor of this endpoint")
    position = decoded[1:]
    if kind in (EVENT_CURSOR, RECENCY_CURSOR) and _event_position(position):
        return position
    if kind == PROFILE_CURSOR and len(position) == 1 and isinstance(position[0], str):
        return [checked_text(position[0], "cursor")]
    raise invalid("cursor", "is not a cursor of this endpoint")


def _event_position(position: list[Any]) -> bool:
    if len(position) != 2:
        return False
    timestamp, message_id = position
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not isinstance(message_id, str):
        return False
    checked_text(message_id, "cursor")
    return MIN_MICROS <= timestamp <= MAX_MICROS
