"""Read-API JSON: stored rows in Segment's camelCase, and a profile merged from its ids' state.

Merging follows the ``profiles`` and ``audience_membership`` views of docs/schema.md, so that
the API and analysts' SQL always agree:

* **traits**: per trait, the value whose event time (``trait_times``) is newest wins; ties go
  to the larger id;
* **group**: the group of the latest group call (``group_time``) across the ids, same ties;
* **audiences**: per audience, the entry with the newest event time wins, same ties; each is
  ``{"member", "enteredAt", "exitedAt", "computedBy": "engage"}``, non-members included (they
  have an ``exitedAt``).

Feedhouse's own audiences and computed traits (``feedhouse.audiences``) join them in
:func:`profile_json`: an audience as ``{..., "computedBy": "feedhouse"}`` (when Engage has an
audience of the same key, Engage's entry moves to ``engage:<key>``), a computed trait's value
in ``traits`` (over an identify trait of the same name) and, marked as computed, in
``computedTraits: {key: {"value", "updatedAt"}}``.

A profile's ids are split by how they were *seen in its events* (those stored under any of
its ids):

* ``userIds``: ids that were the ``userId`` of one of those events, or the ``previousId`` of
  one of its alias calls without ever being an ``anonymousId`` (alias merges users);
* ``anonymousIds``: ids that were the ``anonymousId`` of one of those events and never a
  ``userId`` (an id used as both is a userId);
* ``ids`` lists every id of the profile, including ids known only to the identity tables so
  far (e.g. an alias processed before its events were stored), which appear in neither list.

Times are ISO-8601 UTC with microseconds (``2026-01-01T12:00:00.123000Z``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from feedhouse.read.queries.audiences import ComputedRow
from feedhouse.read.queries.profiles import IdStateRow, ProfileRows, Resolution
from feedhouse.read.queries.timelines import EventRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(micros: int | None) -> str | None:
    """Epoch microseconds as ISO-8601 UTC (``...Z``), None stays None."""
    if micros is None:
        return None
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_value(text: str) -> Any:
    """A stored JSON column as an object; ``''`` (absent) is None, unparsable text is kept as is."""
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _json_dict(text: str) -> dict[str, Any]:
    value = json_value(text)
    return value if isinstance(value, dict) else {}


def event_json(row: EventRow) -> dict[str, Any]:
    """One event as the API returns it; empty ids and names are null."""
    body: dict[str, Any] = {
        "messageId": row.message_id,
        "type": row.type,
        "userId": row.user_id or None,
        "anonymousId": row.anonymous_id or None,
        "event": row.event or None,
        "name": row.name or None,
        "category": row.category or None,
        "groupId": row.group_id or None,
        "previousId": row.previous_id or None,
        "properties": json_value(row.properties),
        "traits": json_value(row.traits),
        "context": json_value(row.context),
        "integrations": json_value(row.integrations),
        "timestamp": iso(row.timestamp),
        "receivedAt": iso(row.received_at),
        "originalTimestamp": row.original_timestamp or None,
        "sentAt": row.sent_at or None,
    }
    extra = json_value(row.extra)
    if extra:
        body["extra"] = extra
    return body


@dataclass(frozen=True, slots=True)
class MergedState:
    """A profile's state: the merge of its ids' current ``id_state`` rows."""

    traits: dict[str, Any]
    group_id: str | None
    audiences: dict[str, dict[str, Any]]
    # When each winning trait value was set (event time, epoch µs; None when not recorded).
    trait_times: dict[str, int | None]


def merge_states(states: Iterable[IdStateRow]) -> MergedState:
    """Merge per the views' rules (newest event time wins, ties to the larger id)."""
    traits: dict[str, tuple[tuple[int, str], Any]] = {}
    audiences: dict[str, tuple[tuple[int, str], dict[str, Any]]] = {}
    group: tuple[tuple[int, str], str] | None = None
    for state in states:
        times = _json_dict(state.trait_times)
        for key, value in _json_dict(state.traits).items():
            time = times.get(key)
            rank = (time if isinstance(time, int) else 0, state.id)
            if key not in traits or traits[key][0] < rank:
                traits[key] = (rank, value)
        if state.group_id:
            rank = (state.group_time or 0, state.id)
            if group is None or group[0] < rank:
                group = (rank, state.group_id)
        for key, entry in _json_dict(state.audiences).items():
            if not isinstance(entry, dict):
                continue
            time = entry.get("time")
            rank = (time if isinstance(time, int) else 0, state.id)
            if key not in audiences or audiences[key][0] < rank:
                audiences[key] = (rank, entry)
    return MergedState(
        traits={key: value for key, (_, value) in sorted(traits.items())},
        trait_times={key: (rank[0] or None) for key, (rank, _) in sorted(traits.items())},
        group_id=group[1] if group else None,
        audiences={key: _audience_json(entry) for key, (_, entry) in sorted(audiences.items())},
    )


def _audience_json(entry: dict[str, Any]) -> dict[str, Any]:
    def micros(name: str) -> int | None:
        value = entry.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return {
        "member": entry.get("member") is True,
        "enteredAt": iso(micros("enteredAt")),
        "exitedAt": iso(micros("exitedAt")),
        "computedBy": "engage",
    }


def classify_ids(ids: Iterable[str], rows: ProfileRows) -> tuple[list[str], list[str]]:
    """(userIds, anonymousIds) of a profile, by the definition in this module's docstring."""
    users: list[str] = []
    anonymous: list[str] = []
    for identifier in sorted(set(ids)):
        if identifier in rows.user_ids or (
            identifier in rows.previous_ids and identifier not in rows.anonymous_ids
        ):
            users.append(identifier)
        elif identifier in rows.anonymous_ids:
            anonymous.append(identifier)
    return users, anonymous


def with_computed(merged: MergedState, computed: Iterable[ComputedRow]) -> tuple[MergedState, dict[str, Any]]:
    """``merged`` with Feedhouse's values added (module docstring), and the ``computedTraits``."""
    traits = dict(merged.traits)
    times = dict(merged.trait_times)
    audiences = dict(merged.audiences)
    marked: dict[str, Any] = {}
    for row in computed:
        if row.kind == "trait":
            if row.value:
                traits[row.key] = json_value(row.value)
                times[row.key] = row.changed_at
                marked[row.key] = {"value": traits[row.key], "updatedAt": iso(row.changed_at)}
            continue
        if row.key in audiences:
            audiences[f"engage:{row.key}"] = audiences.pop(row.key)
        audiences[row.key] = {
            "member": row.member,
            "enteredAt": iso(row.entered_at),
            "exitedAt": iso(row.exited_at),
            "computedBy": "feedhouse",
        }
    ordered = MergedState(
        dict(sorted(traits.items())),
        merged.group_id,
        dict(sorted(audiences.items())),
        dict(sorted(times.items())),
    )
    return ordered, marked


def profile_json(
    resolution: Resolution, rows: ProfileRows, computed: Iterable[ComputedRow] = ()
) -> dict[str, Any]:
    """The full profile: ids, merged traits / group / audiences (both systems), activity."""
    merged, computed_traits = with_computed(merge_states(rows.states), computed)
    users, anonymous = classify_ids(resolution.ids, rows)
    group = None
    if merged.group_id is not None:
        traits = json_value(rows.group_traits.get(merged.group_id, ""))
        group = {"id": merged.group_id, "traits": traits if isinstance(traits, dict) else {}}
    return {
        "id": resolution.profile_id,
        "ids": sorted(resolution.ids),
        "userIds": users,
        "anonymousIds": anonymous,
        "traits": merged.traits,
        "computedTraits": computed_traits,
        "group": group,
        "audiences": merged.audiences,
        "firstSeen": iso(rows.first_seen),
        "lastSeen": iso(rows.last_seen),
        "eventCount": rows.event_count,
    }


def summary_json(profile_id: str, states: Iterable[IdStateRow], last_seen: int | None) -> dict[str, Any]:
    """The compact profile of lists and searches: ``{"id", "traits", "groupId", "lastSeen"}``."""
    return merged_summary_json(profile_id, merge_states(states), last_seen)


def merged_summary_json(profile_id: str, merged: MergedState, last_seen: int | None) -> dict[str, Any]:
    """:func:`summary_json` of a state merged already."""
    return {"id": profile_id, "traits": merged.traits, "groupId": merged.group_id, "lastSeen": iso(last_seen)}
