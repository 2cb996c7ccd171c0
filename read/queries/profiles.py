"""One profile: which profile an id belongs to, every id of it, and the rows it is merged from.

Resolution is three key lookups in key-value tables (id -> profile in ``id_mapping_kv``; profile
-> its ids in ``profile_members_kv``, as the identity graph last published them; each of those
checked against its current mapping, since the two topics reach ClickHouse independently).
Current states come from ``id_state_kv`` (docs/schema.md). Measured on chDB, three simple
queries beat one query chaining them as scalar subqueries or joins (analysing nested subqueries
costs more than a round trip).

Also here: the SQL fragments other queries reuse to say "every id of these profiles" and "the
current state of these ids" (search, people lists).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.read.sql import compose, one, rows

MAPPED_SQL = "SELECT any(profile_id) FROM id_mapping_kv WHERE id = {id:String}"
CURRENT_MAPPINGS_SQL = "SELECT id, profile_id FROM id_mapping_kv WHERE id IN {ids:Array(String)}"

# An id is known when the identity workers mapped it, or events or state exist under it.
KNOWN_SQL = """
SELECT
    (SELECT count() FROM id_mapping_kv WHERE id = {id:String}) > 0
    OR (SELECT count() FROM id_state_kv WHERE id = {id:String}) > 0
    OR (SELECT count() FROM events WHERE person_key = {id:String}) > 0
"""

# Fragment: the current state row of each id in ``$ids`` (an array parameter, or a subquery in
# parentheses), one row per id; ``state`` = (traits, trait_times, group_id, group_time, audiences).
CURRENT_STATE = """
    SELECT id, (traits, trait_times, group_id, group_time, audiences) AS state
    FROM id_state_kv
    WHERE id IN $ids
"""

# Fragment, a WITH item named ``members``: (ids, their profile ids) of every id of the profiles
# in the array expression ``$profiles``: verified id_mapping_by_profile rows (an id that moved
# leaves a stale row there) plus the canonical ids themselves.
MEMBERS_OF = """
    (
        SELECT (groupArray(id), groupArray(profile_id))
        FROM
        (
            SELECT DISTINCT id, profile_id
            FROM
            (
                SELECT id, profile_id
                FROM id_mapping_kv
                WHERE id IN
                (
                    SELECT id FROM id_mapping_by_profile
                    WHERE profile_id IN (SELECT arrayJoin($profiles))
                )
                AND profile_id IN (SELECT arrayJoin($profiles))
                UNION ALL
                SELECT arrayJoin($profiles) AS id, id AS profile_id
            )
        )
    ) AS members
"""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Which profile an id belongs to now, and every id of that profile (canonical id first)."""

    profile_id: str
    mapped: bool
    ids: tuple[str, ...]


def resolve(client: Client, identifier: str) -> Resolution:
    """The current profile of ``identifier`` and all its ids (stale lookup rows dropped)."""
    mapped = str(one(client, MAPPED_SQL, id=identifier)[0])
    profile_id = mapped or identifier
    others = sorted({candidate for _, candidate in candidates_of(client, [profile_id])} - {profile_id})
    ids = [profile_id]
    if others:
        current = rows(client, CURRENT_MAPPINGS_SQL, ids=others)
        ids += sorted(str(other) for other, owner in current if owner == profile_id)
    return Resolution(profile_id, bool(mapped), tuple(ids))


# The graph's record of each profile's ids; a profile with too many for a record (overflow) has
# its ids listed from id_mapping_by_profile (``IN (SELECT arrayJoin(...))``: a large constant
# array in ``IN`` is slow in the primary-key analysis).
CANDIDATES_OF_SQL = """
SELECT profile_id, ids, overflow FROM profile_members_kv WHERE profile_id IN {profiles:Array(String)}
"""
OVERFLOW_SQL = """
SELECT profile_id, id FROM id_mapping_by_profile
WHERE profile_id IN (SELECT arrayJoin({profiles:Array(String)}))
"""


def candidates_of(client: Client, profiles: Sequence[str]) -> list[tuple[str, str]]:
    """(profile, id) for the ids the identity graph last published for each of ``profiles``
    (to be checked against their current mappings: the topics arrive independently)."""
    found = rows(client, CANDIDATES_OF_SQL, profiles=sorted(set(profiles)))
    pairs = [(str(profile), str(identifier)) for profile, ids, _ in found for identifier in ids]
    overflowing = sorted(str(profile) for profile, _, overflow in found if overflow)
    if overflowing:
        pairs += [(str(p), str(i)) for p, i in rows(client, OVERFLOW_SQL, profiles=overflowing)]
    return pairs


def members_of(client: Client, ids: Sequence[str]) -> dict[str, list[str]]:
    """profile -> every id of it (canonical id first), for the profiles ``ids`` belong to now:
    :func:`resolve` for many ids at once, in three key lookups."""
    if not ids:
        return {}
    mapped = {str(i): str(p) for i, p in rows(client, CURRENT_MAPPINGS_SQL, ids=sorted(set(ids)))}
    members: dict[str, list[str]] = {mapped.get(i) or i: [] for i in ids}
    candidates = candidates_of(client, list(members))
    others = sorted({i for _, i in candidates} - set(members))
    current = {str(i): str(p) for i, p in rows(client, CURRENT_MAPPINGS_SQL, ids=others)} if others else {}
    for profile, identifier in sorted(set(candidates)):
        if identifier not in members and current.get(identifier) == profile:
            members[profile].append(identifier)
    return {profile: [profile, *others_of] for profile, others_of in members.items()}


def is_known(client: Client, identifier: str) -> bool:
    """True when Feedhouse has seen ``identifier`` at all (mapping, events or state)."""
    return bool(one(client, KNOWN_SQL, id=identifier)[0])


_ACTIVITY = """
SELECT
    count(),
    toUnixTimestamp64Micro(min(timestamp)),
    toUnixTimestamp64Micro(max(timestamp)),
    groupUniqArray(user_id),
    groupUniqArray(anonymous_id),
    groupUniqArrayIf(previous_id, type = 'alias')$days
FROM
(
    -- One row per messageId with the newest receipt's timestamp (a copy's ids and type never
    -- differ). 2.5x cheaper than FINAL here: FINAL merges every column it reads across parts.
    SELECT
        argMax(timestamp, received_at) AS timestamp, any(user_id) AS user_id,
        any(anonymous_id) AS anonymous_id, any(previous_id) AS previous_id, any(type) AS type
    FROM events
    WHERE person_key IN {ids:Array(String)}
    GROUP BY person_key, message_id
)
"""
ACTIVITY_SQL = compose(_ACTIVITY, days="")
# The same, with the events per UTC day of the whole history (epoch second -> count, one per
# messageId at its winner's time): the person page's chart, for ~1 ms more than the summary alone
# instead of a query of its own (13 ms at 10M events: bench.read_api).
ACTIVITY_WITH_DAYS_SQL = compose(
    _ACTIVITY, days=",\n    sumMap([toUInt32(toStartOfDay(timestamp))], [toUInt32(1)])"
)

STATES_SQL = compose(
    """
SELECT id, state.1, state.2, state.3, toUnixTimestamp64Micro(state.4), state.5
FROM ($current)
ORDER BY id
""",
    current=compose(CURRENT_STATE, ids="{ids:Array(String)}"),
)

GROUP_TRAITS_SQL = """
SELECT group_id, argMax(traits, version)
FROM group_state
WHERE group_id IN {groups:Array(String)}
GROUP BY group_id
"""


@dataclass(frozen=True, slots=True)
class IdStateRow:
    """The current ``id_state`` row of one id (JSON columns as stored)."""

    id: str
    traits: str
    trait_times: str
    group_id: str
    group_time: int | None
    audiences: str


@dataclass(frozen=True, slots=True)
class ProfileRows:
    """What one profile is made of, before merging: its events' summary and its ids' state."""

    event_count: int
    first_seen: int | None
    last_seen: int | None
    user_ids: frozenset[str]
    anonymous_ids: frozenset[str]
    previous_ids: frozenset[str]
    states: tuple[IdStateRow, ...]
    group_traits: dict[str, str]


def id_states(client: Client, ids: Sequence[str]) -> tuple[IdStateRow, ...]:
    """The current ``id_state`` row of each of ``ids`` that has one, by id."""
    if not ids:
        return ()
    return tuple(IdStateRow(*row) for row in rows(client, STATES_SQL, ids=list(ids)))


Activity = tuple[Any, ...]  # ACTIVITY_SQL's row: count, first, last, user ids, anonymous ids, previous ids
States = tuple[tuple[IdStateRow, ...], dict[str, str]]  # the ids' states, their groups' traits


def activity(client: Client, ids: Sequence[str]) -> Activity:
    """The summary of the events of ``ids`` (one query)."""
    return tuple(one(client, ACTIVITY_SQL, ids=list(ids)))


def states_and_groups(client: Client, ids: Sequence[str]) -> States:
    """The current states of ``ids`` and the traits of their groups (a second query if any)."""
    states = id_states(client, ids)
    groups = sorted({state.group_id for state in states if state.group_id})
    traits: dict[str, str] = {}
    if groups:
        traits = {str(group): str(value) for group, value in rows(client, GROUP_TRAITS_SQL, groups=groups)}
    return states, traits


def combined(summary: Activity, states: States) -> ProfileRows:
    """:class:`ProfileRows` of :func:`activity` and :func:`states_and_groups` (run side by side
    where lanes exist, ``feedhouse.read.lanes``)."""
    count, first, last, users, anonymous, previous = summary
    return ProfileRows(
        event_count=int(count),
        first_seen=int(first) if count else None,
        last_seen=int(last) if count else None,
        user_ids=frozenset(users),
        anonymous_ids=frozenset(anonymous),
        previous_ids=frozenset(previous),
        states=states[0],
        group_traits=states[1],
    )


def profile_rows(client: Client, ids: Sequence[str]) -> ProfileRows:
    """The rows a profile is merged from, one query after another: two, a third for groups."""
    return combined(activity(client, ids), states_and_groups(client, ids))


def activity_with_days(client: Client, ids: Sequence[str], days: int) -> tuple[Activity, dict[int, int]]:
    """:func:`activity`, and the events per UTC day (epoch second -> count) over the ``days``
    days ending with the profile's newest event; days without events are absent."""
    found = one(client, ACTIVITY_WITH_DAYS_SQL, ids=list(ids))
    summary, (day_list, counts) = tuple(found[:-1]), found[-1]
    per_day = {int(day): int(count) for day, count in zip(day_list, counts, strict=True)}
    if not per_day:
        return summary, {}
    since = (int(summary[2]) // 1_000_000 // 86_400 - (days - 1)) * 86_400  # summary[2]: the newest
    return summary, {day: count for day, count in per_day.items() if day >= since}
