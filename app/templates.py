"""The pages' Jinja2 environment: autoescaping on everywhere, strict undefined, and the filters
that turn stored values into something shown (times, initials, safe avatar URLs, clipped text).

Everything a filter returns is plain text that Jinja2 then escapes: no filter returns markup.
"""

from __future__ import annotations

import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import orjson
from starlette.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_SHOWN_CHARS = 300  # one value in a list or header; expanded views show everything
MAX_AVATAR_CHARS = 2048


def moment(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def iso_time(micros: int | None) -> str:
    found = moment(micros)
    return "" if found is None else found.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def shown_time(micros: int | None) -> str:
    found = moment(micros)
    return "never" if found is None else found.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso_shown(value: object) -> str:
    """An ISO-8601 UTC time from the read model (``...Z``) as shown on pages ("" for none)."""
    if not isinstance(value, str) or not value:
        return ""
    return value.replace("T", " ").split(".")[0].removesuffix("Z") + " UTC"


def ago(micros: int | None, now: float | None = None) -> str:
    """A short relative time ("5 min ago", "in 2 d" for clocks ahead)."""
    if micros is None:
        return "never"
    seconds = (time.time() if now is None else now) - micros / 1e6
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    else:
        amount = f"{int(seconds)} s"
    return f"in {amount}" if future else f"{amount} ago"


def clip(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """Text of at most ``limit`` characters (an ellipsis says there was more)."""
    text = value if isinstance(value, str) else display(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display(value: object) -> str:
    """A stored JSON value as text: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def pretty(value: object) -> str:
    """A JSON value indented for a <pre> block (None: nothing)."""
    if value is None:
        return ""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def initials(name: object) -> str:
    """Up to two letters for an avatar: the first letters of the first two words (letters only)."""
    words = [w for w in str(name or "").replace("@", " ").replace(".", " ").split() if w]
    letters = [next((c for c in word if unicodedata.category(c).startswith("L")), "") for word in words[:2]]
    return "".join(letters).upper() or "?"


def avatar_url(value: object) -> str | None:
    """The ``avatar`` trait if it is a plain https URL, else None (shown as initials).

    Refuses every other scheme (``javascript:``, ``data:``, ``http:``), credentials in the URL,
    and any whitespace or control character, so the value can only ever be an image request.
    """
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > MAX_AVATAR_CHARS:
        return None
    if any(unicodedata.category(c)[0] in "CZ" for c in value):
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        return None
    return value


def parsed(text: object) -> Any:
    """A stored JSON column as a value (empty or unparsable: the text itself, or None)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def event_title(event: Any) -> str:
    """One line saying what an event is (a stored ``EventRow``)."""
    kind = event.type
    if kind == "track":
        return event.event or "(unnamed event)"
    if kind in ("page", "screen"):
        properties = parsed(event.properties)
        path = properties.get("path") if isinstance(properties, dict) else None
        named = event.name or (path if isinstance(path, str) else "")
        return f"Viewed {named}" if named else f"Viewed a {kind}"
    if kind == "identify":
        traits = parsed(event.traits)
        keys = ", ".join(sorted(traits)) if isinstance(traits, dict) else ""
        return f"Identified ({keys})" if keys else "Identified"
    if kind == "group":
        return f"Joined group {event.group_id}"
    if kind == "alias":
        return f"Alias {event.previous_id} → {event.user_id}"
    return kind


def size_shown(count: object) -> str:
    """A byte count in binary units ("12.3 MiB"), as ``feedhouse status`` prints it."""
    if not isinstance(count, int | float) or isinstance(count, bool):
        return ""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def urlpart(value: object) -> str:
    """A value quoted as one path segment (ids may contain '/', '?', '#')."""
    return quote(str(value), safe="")


def build_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every page, every value: Feedhouse shows what the internet sent
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    filters: dict[str, Any] = {
        "iso_time": iso_time,
        "shown_time": shown_time,
        "iso_shown": iso_shown,
        "ago": ago,
        "clip": clip,
        "display": display,
        "pretty": pretty,
        "initials": initials,
        "avatar_url": avatar_url,
        "urlpart": urlpart,
        "size_shown": size_shown,
        "parsed": parsed,
        "event_title": event_title,
    }
    environment.filters.update(filters)
    return Jinja2Templates(env=environment)
