"""The one placeholder-id rule (identity rule 9) and the id an event belongs to.

SDKs and hand-written integrations send values such as ``""``, ``"anonymous"`` or
``"undefined"`` as ids; they never link or merge anyone. The list is configurable
(``FEEDHOUSE_PLACEHOLDER_IDS``) and compared case-insensitively after stripping. The gateway's
Kafka key, the identity router and the sink's ``person_key`` column all use these functions, so
an event's partition, its identity rows and its stored rows agree on whose event it is.
"""

from __future__ import annotations

DEFAULT_PLACEHOLDER_IDS = (
    "",
    "anonymous",
    "null",
    "none",
    "nil",
    "undefined",
    "unknown",
    "guest",
    "0",
    "-1",
    "nan",
    "[object object]",
    "00000000-0000-0000-0000-000000000000",
)
DEFAULT_PLACEHOLDERS = frozenset(DEFAULT_PLACEHOLDER_IDS)


def real_id(value: str | None, placeholders: frozenset[str]) -> str | None:
    """``value`` unless it is missing or a placeholder such as ``"anonymous"``."""
    if not value or value.strip().lower() in placeholders:
        return None
    return value


def person_key(user_id: str | None, anonymous_id: str | None, placeholders: frozenset[str]) -> str:
    """The id an event belongs to: its real userId, else its real anonymousId, else ``''``."""
    # real_id's rule, inlined: the sink computes this for every row.
    if user_id and user_id.strip().lower() not in placeholders:
        return user_id
    if anonymous_id and anonymous_id.strip().lower() not in placeholders:
        return anonymous_id
    return ""
