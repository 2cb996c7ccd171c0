"""Segment call -> Feedhouse event record: validation and normalisation, with no I/O.

:func:`normalize` turns one decoded JSON object into the record of ``avro/schemas/event``
or raises :class:`Rejection` naming what is wrong. It follows Segment's HTTP Tracking API spec:
an id on every call, ``event`` on track, ``groupId`` on group, ``previousId`` + ``userId`` on
alias, a generated ``messageId`` when missing, and clock-skew correction of ``timestamp`` with
``sentAt`` (``timestamp = receivedAt - (sentAt - originalTimestamp)``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from feedhouse import metrics

EVENT_TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
# Fields with a column of their own in the event schema; everything else goes to ``extra``.
KNOWN_FIELDS = frozenset(
    {
        "type",
        "messageId",
        "userId",
        "anonymousId",
        "groupId",
        "previousId",
        "event",
        "name",
        "category",
        "timestamp",
        "originalTimestamp",
        "sentAt",
        "receivedAt",
        "properties",
        "traits",
        "context",
        "integrations",
        "writeKey",
    }
)
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
MAX_MESSAGE_ID_CHARS = 100  # Segment: messageId under 100 characters
MAX_ID_CHARS = 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejection(ValueError):
    """Why one event cannot be accepted: a stable ``code`` and a message naming the field."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class BatchDefaults:
    """What a batch request contributes to each of its items."""

    context: Mapping[str, Any] | None = None
    integrations: Mapping[str, Any] | None = None
    sent_at: str | None = None
    parsed_sent_at: int | None = None  # filled on first use


NO_DEFAULTS = BatchDefaults()


def micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_time(value: Any, field: str) -> int:
    """An ISO-8601 timestamp as epoch microseconds, or a Rejection naming ``field``."""
    if not isinstance(value, str):
        raise Rejection("invalid_timestamp", f"{field} must be an ISO-8601 string")
    text = value.strip()
    if text.endswith(("Z", "z")):  # fromisoformat accepts "Z" only from 3.11 on some forms
        text = text[:-1] + "+00:00"
    try:
        return micros(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise Rejection(
            "invalid_timestamp", f"{field} is not an ISO-8601 timestamp: {value[:64]!r}"
        ) from None


def _parse_sent_at(sent_at: str, defaults: BatchDefaults) -> int:
    # Every item of an SDK batch shares the batch-level sentAt: parse it once per batch.
    if sent_at is defaults.sent_at:
        if defaults.parsed_sent_at is None:
            defaults.parsed_sent_at = parse_time(sent_at, "sentAt")
        return defaults.parsed_sent_at
    return parse_time(sent_at, "sentAt")


def _id(message: Mapping[str, Any], field: str) -> str | None:
    """A Segment id as a string. Numbers are accepted (the SDKs stringify them)."""
    value = message.get(field)
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_ID_CHARS:
            raise Rejection("invalid_id", f"{field} is longer than {MAX_ID_CHARS} characters")
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise Rejection("invalid_id", f"{field} must be a string or a finite number")
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    raise Rejection("invalid_id", f"{field} must be a string or a number, not {_kind(value)}")


def _text(message: Mapping[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None or isinstance(value, str):
        return value
    raise Rejection("invalid_field", f"{field} must be a string, not {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else "a string"


def _json_object(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Rejection("invalid_field", f"{field} must be an object, not {_kind(value)}")
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # e.g. nesting deeper than orjson's recursion limit
        raise Rejection("invalid_field", f"{field} cannot be stored: {exc}") from None


def _present(value: str | None) -> bool:
    return value is not None and value.strip() != ""


def normalize(
    message: Any,
    *,
    event_type: str | None,
    received_at: int,
    source_id: str,
    defaults: BatchDefaults = NO_DEFAULTS,
    from_segment: bool = False,
    position: int = 0,
    max_future_micros: int | None = None,
) -> dict[str, Any]:
    """Validate one Segment call and build its event record.

    ``event_type`` comes from the path (``/v1/track``); ``None`` means take ``type`` from the
    message (batch items, webhook deliveries). ``from_segment`` marks a delivery by Segment
    itself (the Webhooks destination): its ``timestamp`` is already corrected and its
    ``receivedAt`` is Segment's, so both are kept. ``position`` is the index in a batch: an
    item without a timestamp gets ``receivedAt + position`` microseconds, so that items of one
    batch keep their order in event time. A corrected timestamp more than ``max_future_micros``
    after ``receivedAt`` becomes ``receivedAt``. Raises :class:`Rejection`.
    """
    if not isinstance(message, dict):
        raise Rejection("invalid_event", f"an event must be a JSON object, not {_kind(message)}")
    kind = event_type or message.get("type")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        shown = kind if isinstance(kind, str) else _kind(kind)
        raise Rejection(
            "invalid_type", f"type must be one of {', '.join(sorted(EVENT_TYPES))}; got {shown!r}"
        )

    user_id = _id(message, "userId")
    anonymous_id = _id(message, "anonymousId")
    group_id = _id(message, "groupId")
    previous_id = _id(message, "previousId")
    if kind == "alias":
        if not _present(previous_id):
            raise Rejection("missing_previous_id", "alias requires previousId")
        if not _present(user_id):
            raise Rejection("missing_user_id", "alias requires userId")
    elif not (_present(user_id) or _present(anonymous_id)):
        raise Rejection("missing_user_id", f"{kind} requires userId or anonymousId")
    event_name = _text(message, "event")
    if kind == "track" and not _present(event_name):
        raise Rejection("missing_event", "track requires event (the event name)")
    if kind == "group" and not _present(group_id):
        raise Rejection("missing_group_id", "group requires groupId")

    message_id = _id(message, "messageId")
    if message_id is None or message_id == "":
        message_id = str(uuid.uuid4())
    elif len(message_id) >= MAX_MESSAGE_ID_CHARS:
        raise Rejection("invalid_message_id", f"messageId must be under {MAX_MESSAGE_ID_CHARS} characters")

    sent_at = message.get("sentAt", defaults.sent_at)
    if sent_at is not None and not isinstance(sent_at, str):
        raise Rejection("invalid_timestamp", "sentAt must be an ISO-8601 string")
    if from_segment:
        original = message.get("originalTimestamp")
        if message.get("receivedAt") is not None:
            received_at = parse_time(message["receivedAt"], "receivedAt")
        given = message.get("timestamp")
        timestamp = received_at if given is None else parse_time(given, "timestamp")
    else:
        original = message.get("timestamp")
        if original is None:
            original = message.get("originalTimestamp")
        if original is None:
            timestamp = received_at + position
        else:
            timestamp = parse_time(original, "timestamp")
            if sent_at is not None:
                # Segment's clock-skew rule: the device clock was off by (sentAt - receivedAt).
                sent = _parse_sent_at(sent_at, defaults)
                timestamp = received_at - (sent - timestamp)
    if max_future_micros is not None and timestamp > received_at + max_future_micros:
        # A device clock far ahead would pin the event at the top of every timeline: it is
        # stored at receivedAt (originalTimestamp keeps what was sent) and counted.
        timestamp = received_at
        metrics.FUTURE_TIMESTAMPS.inc()

    context = message.get("context")
    if defaults.context and (context is None or isinstance(context, dict)):
        context = {**defaults.context, **(context or {})}
    integrations = message.get("integrations")
    if defaults.integrations and (integrations is None or isinstance(integrations, dict)):
        integrations = {**defaults.integrations, **(integrations or {})}

    extra = {key: value for key, value in message.items() if key not in KNOWN_FIELDS}
    record = {
        "type": kind,
        "messageId": message_id,
        "userId": user_id,
        "anonymousId": anonymous_id,
        "groupId": group_id,
        "previousId": previous_id,
        "event": event_name,
        "name": _text(message, "name"),
        "category": _text(message, "category"),
        "timestamp": timestamp,
        "receivedAt": received_at,
        "originalTimestamp": original if isinstance(original, str) else None,
        "sentAt": sent_at,
        "properties": _json_object(message.get("properties"), "properties"),
        "traits": _json_object(message.get("traits"), "traits"),
        "context": _json_object(context, "context"),
        "integrations": _json_object(integrations, "integrations"),
        "extra": _json_object(extra, "extra") if extra else None,
        "sourceId": source_id,
    }
    return record
