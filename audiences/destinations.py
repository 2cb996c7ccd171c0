"""What an operator may register as a destination, validated. Pure, no I/O.

``{"key": "segment-prod", "type": "segment", "endpoint"?: "https://api.segment.io",
"writeKey": "...", "only"?: [definition keys]}`` or ``{"key", "type": "webhook", "url",
"secret"?, "only"?}``. Errors are :class:`~feedhouse.audiences.definitions.DefinitionError`
with the offending field first, like definitions'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from feedhouse.audiences.definitions import DefinitionError, check_key
from feedhouse.audiences.delivery import SEGMENT, WEBHOOK

DESTINATION_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
DEFAULT_SEGMENT_ENDPOINT = "https://api.segment.io"
MAX_URL_CHARS = 2048
MAX_SECRET_CHARS = 512
MAX_ONLY = 100
FIELDS = {
    SEGMENT: ("key", "type", "endpoint", "writeKey", "only"),
    WEBHOOK: ("key", "type", "url", "secret", "only"),
}


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    key: str
    type: str
    config: dict[str, Any]
    only: tuple[str, ...]


def parse_destination(body: object) -> DestinationSpec:
    if not isinstance(body, dict):
        raise DefinitionError("body: must be a JSON object")
    kind = body.get("type")
    if kind not in FIELDS:
        raise DefinitionError(f"type: must be {SEGMENT!r} or {WEBHOOK!r}; got {kind!r}")
    for name in body:
        if name not in FIELDS[kind]:
            raise DefinitionError(f"{name}: unknown field (expected {', '.join(FIELDS[kind])})")
    key = body.get("key")
    if not isinstance(key, str) or not DESTINATION_KEY.match(key):
        raise DefinitionError(
            "key: must be lowercase letters, digits, _ or -, starting with a letter or digit"
            f" (at most 64 characters); got {key!r}"
        )
    config: dict[str, Any]
    if kind == SEGMENT:
        config = {
            "endpoint": _url(body.get("endpoint", DEFAULT_SEGMENT_ENDPOINT), "endpoint"),
            "writeKey": _secret(body.get("writeKey"), "writeKey", required=True),
        }
    else:
        config = {"url": _url(body.get("url"), "url"), "secret": _secret(body.get("secret", ""), "secret")}
    only = body.get("only", [])
    if not isinstance(only, list) or len(only) > MAX_ONLY:
        raise DefinitionError(f"only: must be a list of at most {MAX_ONLY} trait or audience keys")
    keys = tuple(dict.fromkeys(check_key(item, f"only[{index}]") for index, item in enumerate(only)))
    return DestinationSpec(key, kind, config, keys)


def _url(value: object, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise DefinitionError(f"{name}: must be an http(s) URL of at most {MAX_URL_CHARS} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DefinitionError(f"{name}: must be an http(s) URL with a host; got {value[:100]!r}")
    return value


def _secret(value: object, name: str, *, required: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_SECRET_CHARS or (required and not value):
        need = "a non-empty string" if required else "a string"
        raise DefinitionError(f"{name}: must be {need} of at most {MAX_SECRET_CHARS} characters")
    return value


def masked(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration as the API shows it: secrets hidden (the last four characters of long ones)."""
    shown = dict(config)
    for name in ("writeKey", "secret"):
        value = str(shown.get(name) or "")
        if value:
            shown[name] = "..." + value[-4:] if len(value) >= 16 else "****"
    return shown
