"""Every SQL statement of the read API, with the functions that run them and typed results.

Values are always bound server-side (``{name:Type}``, clickhouse-connect ``parameters=``); the SQL
text is constant, so no request data ever becomes SQL. Tables are those of docs/schema.md, read
with the deduplication recipes it prescribes:

* **id -> profile**: ``argMax(profile_id, version)`` from ``id_mapping`` (an id without a row is
  its own profile); **profile -> ids**: candidates from ``id_mapping_by_profile``, each verified
  against its current mapping (stale rows are left behind when an id moves).
* **events**: one row per messageId, the newest receipt (``FINAL``, or ``argMax(...,
  received_at)`` grouped by the ordering key where only a few columns are needed: 2-3x cheaper
  than FINAL on small columns, measured at 10M events in 10 parts).
* **state lookups** (``id_state_by_trait|group|audience``): candidate ids only; every match is
  verified against the current state of *all* ids of the candidate's profile, merged with the
  rules of the ``profiles`` view (per trait / audience / the group: newest event time wins,
  ties broken by the larger id).

Cost model measured on chDB here (2 cores): ~0.7 ms per query, 2-5 ms per key lookup (one
granule per part, 8-10 parts at 10M events), and several ms of *analysis* for a query with
nested scalar subqueries or UNION branches. So the per-profile endpoints run a few simple
queries (resolution: three key lookups; then one query per table) rather than one composite
query, which measured 25-35% slower. Aggregations over many profiles (search, groups,
audiences) are single queries whose intermediate sets are scalar arrays, computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

# ---------------------------------------------------------------------------------------------
# Profile resolution: three key lookups. Measured on chDB, three simple queries beat one query
# chaining them as scalar subqueries (analysis of nested subqueries costs more than a round trip).

MAPPED_SQL = "SELECT argMax(profile_id, version) FROM id_mapping WHERE id = {id:String}"
CANDIDATES_SQL = "SELECT groupArray(id) FROM id_mapping_by_profile WHERE profile_id = {profile:String}"
CURRENT_MAPPINGS_SQL = """
SELECT id, argMax(profile_id, version) FROM id_mapping WHERE id IN {ids:Array(String)} GROUP BY id
"""

# An id is known when the identity workers mapped it, or events or state exist under it.
KNOWN_SQL = """
SELECT
    (SELECT count() FROM id_mapping WHERE id = {id:String}) > 0
    OR (SELECT count() FROM events WHERE person_key = {id:String}) > 0
    OR (SELECT count() FROM id_state WHERE id = {id:String}) > 0
"""


@dataclass(frozen=True, slots=True)
class Resolution:
    """Which profile an id belongs to now, and every id of that profile (canonical id first)."""

    profile_id: str
    mapped: bool
    ids: tuple[str, ...]


def resolve(client: Client, identifier: str) -> Resolution:
    """The current profile of ``identifier`` and all its ids (stale lookup rows dropped)."""
    mapped = str(client.query(MAPPED_SQL, parameters={"id": identifier}).result_rows[0][0])
    profile_id = mapped or identifier
    candidates = client.query(CANDIDATES_SQL, parameters={"profile": profile_id}).result_rows[0][0]
    others = sorted({str(candidate) for candidate in candidates} - {profile_id})
    ids = [profile_id]
    if others:
        current = client.query(CURRENT_MAPPINGS_SQL, parameters={"ids": others}).result_rows
        ids += sorted(str(other) for other, owner in current if owner == profile_id)
    return Resolution(profile_id, bool(mapped), tuple(ids))


def is_known(client: Client, identifier: str) -> bool:
    """True when Feedhouse has seen ``identifier`` at all (mapping, events or state)."""
    return bool(client.query(KNOWN_SQL, parameters={"id": identifier}).result_rows[0][0])


# ---------------------------------------------------------------------------------------------
# One profile: its events' summary and its ids' current state (then the traits of their groups).

ACTIVITY_SQL = """
SELECT
    count(),
    toUnixTimestamp64Micro(min(timestamp)),
    toUnixTimestamp64Micro(max(timestamp)),
    groupUniqArray(user_id),
    groupUniqArray(anonymous_id),
    groupUniqArrayIf(previous_id, type = 'alias')
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

STATES_SQL = """
SELECT id, current.1, current.2, current.3, toUnixTimestamp64Micro(current.4), current.5
FROM
(
    SELECT id, argMax((traits, trait_times, group_id, group_time, audiences), version) AS current
    FROM id_state
    WHERE id IN {ids:Array(String)}
    GROUP BY id
)
ORDER BY id
"""

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


def profile_rows(client: Client, ids: Sequence[str]) -> ProfileRows:
    """The rows a profile is merged from: two queries, a third when its ids have groups."""
    parameters = {"ids": list(ids)}
    count, first, last, users, anonymous, previous = client.query(
        ACTIVITY_SQL, parameters=parameters
    ).result_rows[0]
    states = tuple(IdStateRow(*row) for row in client.query(STATES_SQL, parameters=parameters).result_rows)
    groups = sorted({state.group_id for state in states if state.group_id})
    traits: dict[str, str] = {}
    if groups:
        rows = client.query(GROUP_TRAITS_SQL, parameters={"groups": groups}).result_rows
        traits = {str(group): str(value) for group, value in rows}
    return ProfileRows(
        event_count=int(count),
        first_seen=int(first) if count else None,
        last_seen=int(last) if count else None,
        user_ids=frozenset(users),
        anonymous_ids=frozenset(anonymous),
        previous_ids=frozenset(previous),
        states=states,
        group_traits=traits,
    )


# ---------------------------------------------------------------------------------------------
# Events: a profile's timeline and the global feed, newest first by (timestamp, message_id).

EVENT_COLUMNS_SQL = """
    message_id, type, user_id, anonymous_id, group_id, previous_id, event, name, category,
    toUnixTimestamp64Micro(timestamp) AS ts, toUnixTimestamp64Micro(received_at) AS received,
    original_timestamp, sent_at, properties, traits, context, integrations, extra, person_key
"""

# Filters shared by the timeline and the feed. An empty array means "no filter"; page events
# are hidden unless asked for (hidden=1) or explicitly listed in the types.
EVENT_FILTERS_SQL = """
    AND ({first_page:UInt8} = 1
         OR (timestamp, message_id)
            < (fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'), {before_id:String}))
    AND ({first_page:UInt8} = 1 OR timestamp <= fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'))
    AND (empty({types:Array(String)}) OR type IN {types:Array(String)})
    AND (empty({events:Array(String)}) OR event IN {events:Array(String)})
    AND ({hidden:UInt8} = 1 OR type != 'page' OR has({types:Array(String)}, 'page'))
"""

# FINAL over the profile's primary-key ranges, with the filters applied after the merge (so a
# superseded copy never matches); ORDER BY ... LIMIT lets ClickHouse read the large columns
# lazily, for the page's rows only.
TIMELINE_SQL = f"""
SELECT {EVENT_COLUMNS_SQL}
FROM events FINAL
WHERE person_key IN {{ids:Array(String)}}
{EVENT_FILTERS_SQL}
ORDER BY timestamp DESC, message_id DESC
LIMIT {{limit:UInt32}}
"""

# The global feed cannot use the ordering key (person_key first). It pages in two steps:
# 1. candidate positions, newest first, from the small columns only and within a time window
#    below the cursor (the timestamp minmax index and part ranges skip older data; ClickHouse's
#    top-K filter prunes the rest), widened until the page is full or the window is unbounded;
# 2. the winning copy (newest receipt) of each candidate messageId, by primary key. FINAL is
#    not used here: it would read whole granules of every column (0.5 s at 10M events); the
#    winner is found from the small columns, then only the winning rows are read in full.
# A candidate whose winner sits at another position (a redelivery with another timestamp) is
# dropped: every message is shown once, at its winner's position.
FEED_CANDIDATES_SQL = f"""
WITH
    if(
        {{first_page:UInt8}} = 1,
        (SELECT max(timestamp) FROM events),
        fromUnixTimestamp64Micro({{before_ts:Int64}}, 'UTC')
    ) AS newest
SELECT person_key, message_id, toUnixTimestamp64Micro(timestamp) AS ts
FROM events
WHERE ({{window_seconds:UInt32}} = 0 OR timestamp >= newest - toIntervalSecond({{window_seconds:UInt32}}))
{EVENT_FILTERS_SQL}
ORDER BY timestamp DESC, message_id DESC
LIMIT {{limit:UInt32}}
"""

FEED_EVENTS_SQL = f"""
WITH
    (
        SELECT CAST((groupArray(id), groupArray(profile_id)), 'Map(String, String)')
        FROM
        (
            SELECT id, argMax(profile_id, version) AS profile_id
            FROM id_mapping
            WHERE id IN {{person_keys:Array(String)}}
            GROUP BY id
        )
    ) AS profiles
SELECT {EVENT_COLUMNS_SQL}, if(profiles[person_key] = '', person_key, profiles[person_key]) AS profile_id
FROM events
WHERE person_key IN {{person_keys:Array(String)}}
  AND (person_key, message_id, received_at) IN
  (
      SELECT person_key, message_id, max(received_at)
      FROM events
      WHERE person_key IN {{person_keys:Array(String)}}
        AND (person_key, message_id) IN {{keys:Array(Tuple(String, String))}}
      GROUP BY person_key, message_id
  )
LIMIT 1 BY person_key, message_id
"""
# Windows tried below the cursor, in seconds; 0 = unbounded (the last resort).
FEED_WINDOWS = (3_600, 86_400, 32 * 86_400, 0)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A page request: strictly before ``before`` (timestamp µs, messageId), at most ``limit``."""

    limit: int
    before: tuple[int, str] | None = None
    types: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    hidden: bool = False

    def parameters(self) -> dict[str, Any]:
        before_ts, before_id = self.before if self.before is not None else (0, "")
        return {
            "first_page": 0 if self.before is not None else 1,
            "before_ts": before_ts,
            "before_id": before_id,
            "types": list(self.types),
            "events": list(self.events),
            "hidden": 1 if self.hidden else 0,
            "limit": self.limit,
        }


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event (the winning copy of its messageId); JSON columns as stored."""

    message_id: str
    type: str
    user_id: str
    anonymous_id: str
    group_id: str
    previous_id: str
    event: str
    name: str
    category: str
    timestamp: int
    received_at: int
    original_timestamp: str
    sent_at: str
    properties: str
    traits: str
    context: str
    integrations: str
    extra: str
    person_key: str

    @property
    def position(self) -> tuple[int, str]:
        """The keyset position: newest first by (timestamp, messageId)."""
        return (self.timestamp, self.message_id)


def timeline(client: Client, ids: Sequence[str], page: EventFilter) -> list[EventRow]:
    """The newest events of ``ids`` (a profile's) matching ``page``, newest first."""
    parameters = page.parameters()
    parameters["ids"] = list(ids)
    return [EventRow(*row) for row in client.query(TIMELINE_SQL, parameters=parameters).result_rows]


FeedEvent = tuple[EventRow, str | None]  # an event and the profile it resolves to (None: no real id)


def feed(client: Client, page: EventFilter) -> list[FeedEvent]:
    """The newest events of every profile matching ``page``, each with its resolved profile.

    Usually two queries. A window that holds too few candidates is widened; candidates that are
    superseded copies are skipped and the scan continues, so a page has ``page.limit`` events
    whenever that many exist below the cursor.
    """
    found: list[FeedEvent] = []
    cursor = page
    while True:
        # A little slack: a redelivered copy costs a candidate without yielding an event.
        scan = page.limit - len(found) + 8
        candidates, exhausted = _feed_candidates(client, cursor, scan)
        if not candidates:
            return found
        winners = _winning_copies(client, candidates)
        for person_key, message_id, ts in candidates:
            winner = winners.get((person_key, message_id))
            if winner is not None and winner[0].timestamp == ts:
                found.append(winner)
                if len(found) == page.limit:
                    return found
        if exhausted:
            return found
        last = candidates[-1]
        cursor = EventFilter(page.limit, (last[2], last[1]), page.types, page.events, page.hidden)


def _feed_candidates(client: Client, page: EventFilter, scan: int) -> tuple[list[tuple[str, str, int]], bool]:
    """Up to ``scan`` candidate positions below the cursor, and whether the scan reached the end."""
    parameters = page.parameters()
    parameters["limit"] = scan
    for window in FEED_WINDOWS:
        parameters["window_seconds"] = window
        rows = client.query(FEED_CANDIDATES_SQL, parameters=parameters).result_rows
        if len(rows) >= scan or window == 0:
            # Identical copies (same position) count once.
            unique = dict.fromkeys((str(key), str(mid), int(ts)) for key, mid, ts in rows)
            return list(unique), len(rows) < scan
    raise AssertionError("the last window is unbounded")


def _winning_copies(
    client: Client, candidates: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str], FeedEvent]:
    keys = [(person_key, message_id) for person_key, message_id, _ in candidates]
    parameters = {"person_keys": sorted({key for key, _ in keys}), "keys": keys}
    rows = client.query(FEED_EVENTS_SQL, parameters=parameters).result_rows
    return {(row[18], row[0]): (EventRow(*row[:19]), row[19] or None) for row in rows}


# ---------------------------------------------------------------------------------------------
# Profiles matching filters (search, group members): candidates from a lookup table, verified
# against the merged state of every id of each candidate's profile.
#
# Intermediate sets are scalar arrays, computed once per query (a CTE is re-run at every
# reference), and always probed with ``IN (SELECT arrayJoin(array))``: ``IN array`` with a
# large constant array takes seconds in the primary-key analysis (measured: 17k ids, 14 s).

CANDIDATES_BY_TRAIT = """
SELECT id FROM id_state_by_trait
WHERE key = {keys:Array(String)}[1] AND value = {values:Array(String)}[1]
"""
CANDIDATES_BY_GROUP = """
SELECT id FROM id_state_by_group WHERE group_id = {group:String}
"""
CANDIDATES_BY_AUDIENCE = """
SELECT id FROM id_state_by_audience WHERE audience = {audience:String} AND member = 1
"""


def _members_of(profiles: str) -> str:
    """SQL ``WITH`` item ``members``: (ids, their profile ids) of every id of the profiles in
    the array expression ``profiles`` — verified ``id_mapping_by_profile`` rows (an id that
    moved leaves a stale row there) plus the canonical ids themselves."""
    return f"""    (
        SELECT (groupArray(id), groupArray(profile_id))
        FROM
        (
            SELECT DISTINCT id, profile_id
            FROM
            (
                SELECT id, argMax(profile_id, version) AS profile_id
                FROM id_mapping
                WHERE id IN
                (
                    SELECT id FROM id_mapping_by_profile
                    WHERE profile_id IN (SELECT arrayJoin({profiles}))
                )
                GROUP BY id
                HAVING profile_id IN (SELECT arrayJoin({profiles}))
                UNION ALL
                SELECT arrayJoin({profiles}) AS id, id AS profile_id
            )
        )
    ) AS members
"""


MATCHING_PROFILES_SQL = (
    """
WITH
    (SELECT groupUniqArray(id) FROM ({candidates})) AS candidate_ids,
    -- Each candidate's current profile (an unmapped id is its own profile).
    (
        SELECT groupUniqArray(if(mapping.profile_id = '', candidate.id, mapping.profile_id))
        FROM (SELECT arrayJoin(candidate_ids) AS id) AS candidate
        LEFT JOIN
        (
            SELECT id, argMax(profile_id, version) AS profile_id
            FROM id_mapping
            WHERE id IN (SELECT arrayJoin(candidate_ids))
            GROUP BY id
        ) AS mapping ON mapping.id = candidate.id
    ) AS candidate_profiles,
    -- Every id of those profiles.
"""
    + _members_of("candidate_profiles")
    + """SELECT
    count() AS total,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {{after:String}})), 1, {{limit:UInt32}})
        AS page
FROM
(
    SELECT profile_id
    FROM
    (
        -- One row per (profile, filtered trait); the group and audience winners repeat per row.
        SELECT
            profile_id,
            key,
            countIf(key != '' AND JSONHas(state.1, key)) AS has_key,
            argMaxIf(
                JSONExtractRaw(state.1, key),
                (JSONExtract(state.2, key, 'Int64'), id),
                key != '' AND JSONHas(state.1, key)
            ) AS raw,
            argMaxIf(state.3, (coalesce(state.4, toDateTime64(0, 6, 'UTC')), id), state.3 != '') AS group_id,
            argMaxIf(
                JSONExtractBool(state.5, {{audience:String}}, 'member'),
                (coalesce(JSONExtract(state.5, {{audience:String}}, 'time', 'Nullable(Int64)'), 0), id),
                JSONHas(state.5, {{audience:String}})
            ) AS member
        FROM
        (
            SELECT pair.2 AS profile_id, pair.1 AS id, current.state AS state
            FROM (SELECT arrayJoin(arrayZip(members.1, members.2)) AS pair) AS member_ids
            INNER JOIN
            (
                SELECT id, argMax((traits, trait_times, group_id, group_time, audiences), version) AS state
                FROM id_state
                WHERE id IN (SELECT arrayJoin(members.1))
                GROUP BY id
            ) AS current ON current.id = member_ids.pair.1
        )
        LEFT ARRAY JOIN {{keys:Array(String)}} AS key
        GROUP BY profile_id, key
    )
    GROUP BY profile_id
    HAVING
        -- Traits are compared as the lookup table renders them: strings unquoted, else JSON text.
        countIf(
            has_key > 0
            AND if(JSONType(raw) = 'String', JSONExtractString(raw), raw)
                = {{values:Array(String)}}[indexOf({{keys:Array(String)}}, key)]
        ) = length({{keys:Array(String)}})
        AND ({{group:String}} = '' OR any(group_id) = {{group:String}})
        AND ({{audience:String}} = '' OR any(member) = 1)
)
"""
)


@dataclass(frozen=True, slots=True)
class ProfileQuery:
    """Filters on profiles' merged state; every filter must hold. Traits as name -> text value."""

    traits: tuple[tuple[str, str], ...] = ()
    group: str = ""
    audience: str = ""

    def __bool__(self) -> bool:
        return bool(self.traits or self.group or self.audience)


def matching_profiles(client: Client, query: ProfileQuery, after: str, limit: int) -> tuple[int, list[str]]:
    """(how many profiles match, the first ``limit`` of them after ``after`` by profile id)."""
    if query.traits:
        candidates = CANDIDATES_BY_TRAIT
    elif query.group:
        candidates = CANDIDATES_BY_GROUP
    elif query.audience:
        candidates = CANDIDATES_BY_AUDIENCE
    else:
        raise ValueError("matching_profiles needs at least one filter")
    parameters = {
        "keys": [key for key, _ in query.traits],
        "values": [value for _, value in query.traits],
        "group": query.group,
        "audience": query.audience,
        "after": after,
        "limit": limit,
    }
    sql = MATCHING_PROFILES_SQL.format(candidates=candidates)
    total, page = client.query(sql, parameters=parameters).result_rows[0]
    return int(total), list(page)


# Every profile, by canonical id: ids from the three places an id can be known, in id order,
# each kept when it resolves to itself.
LIST_PROFILES_SQL = """
WITH
    (
        SELECT groupArray(id)
        FROM
        (
            SELECT id
            FROM
            (
                (SELECT DISTINCT person_key AS id FROM events WHERE person_key > {after:String}
                 ORDER BY person_key LIMIT {scan:UInt32})
                UNION ALL
                (SELECT DISTINCT id FROM id_mapping WHERE id > {after:String} ORDER BY id LIMIT {scan:UInt32})
                UNION ALL
                (SELECT DISTINCT id FROM id_state WHERE id > {after:String} ORDER BY id LIMIT {scan:UInt32})
            )
            GROUP BY id
            ORDER BY id
            LIMIT {scan:UInt32}
        )
    ) AS scanned
SELECT
    scanned,
    (
        SELECT groupArray(id)
        FROM
        (
            SELECT id, argMax(profile_id, version) AS profile_id
            FROM id_mapping
            WHERE id IN (SELECT arrayJoin(scanned))
            GROUP BY id
            HAVING profile_id != id
        )
    ) AS merged_away
"""


def list_profiles(client: Client, after: str, limit: int) -> list[str]:
    """The first ``limit`` canonical profile ids after ``after``, in id order."""
    found: list[str] = []
    while len(found) < limit:
        scan = (limit - len(found)) * 2 + 16
        parameters = {"after": after, "scan": scan}
        scanned, merged_away = client.query(LIST_PROFILES_SQL, parameters=parameters).result_rows[0]
        elsewhere = set(merged_away)
        found += [identifier for identifier in scanned if identifier not in elsewhere]
        if len(scanned) < scan:
            break
        after = scanned[-1]
    return found[:limit]


# Compact rows for a page of profiles: every id's current state and the newest event time.
SUMMARIES_SQL = (
    """
WITH
"""
    + _members_of("{profiles:Array(String)}")
    + """SELECT
    'state' AS part, pair.2 AS profile_id, pair.1 AS id,
    current.state.1 AS traits, current.state.2 AS trait_times, current.state.3 AS group_id,
    toUnixTimestamp64Micro(current.state.4) AS group_time, current.state.5 AS audiences
FROM (SELECT arrayJoin(arrayZip(members.1, members.2)) AS pair) AS member_ids
INNER JOIN
(
    SELECT id, argMax((traits, trait_times, group_id, group_time, audiences), version) AS state
    FROM id_state
    WHERE id IN (SELECT arrayJoin(members.1))
    GROUP BY id
) AS current ON current.id = member_ids.pair.1
UNION ALL
SELECT 'seen', pair.2, pair.1, '', '', '', seen.last_seen, ''
FROM (SELECT arrayJoin(arrayZip(members.1, members.2)) AS pair) AS member_ids
INNER JOIN
(
    SELECT person_key, toUnixTimestamp64Micro(max(timestamp)) AS last_seen
    FROM events FINAL
    WHERE person_key IN (SELECT arrayJoin(members.1))
    GROUP BY person_key
) AS seen ON seen.person_key = member_ids.pair.1
"""
)


@dataclass(frozen=True, slots=True)
class ProfileSummaryRows:
    """A page of profiles: each one's ids' current state rows and its newest event time."""

    states: dict[str, list[IdStateRow]]
    last_seen: dict[str, int]


def profile_summaries(client: Client, profile_ids: Sequence[str]) -> ProfileSummaryRows:
    states: dict[str, list[IdStateRow]] = {profile: [] for profile in profile_ids}
    last_seen: dict[str, int] = {}
    if not profile_ids:
        return ProfileSummaryRows(states, last_seen)
    result = client.query(SUMMARIES_SQL, parameters={"profiles": list(profile_ids)})
    for part, profile, identifier, traits, trait_times, group_id, time, audiences in result.result_rows:
        if part == "state":
            states[profile].append(IdStateRow(identifier, traits, trait_times, group_id, time, audiences))
        elif time is not None:
            last_seen[profile] = max(last_seen.get(profile, time), time)
    return ProfileSummaryRows(states, last_seen)


# ---------------------------------------------------------------------------------------------
# Groups

GROUP_SQL = """
SELECT
    (SELECT argMax(traits, version) FROM group_state WHERE group_id = {group:String}) AS traits,
    (SELECT count() FROM group_state WHERE group_id = {group:String}) > 0
        OR (SELECT count() FROM id_state_by_group WHERE group_id = {group:String}) > 0 AS known
"""


def group_traits(client: Client, group_id: str) -> str | None:
    """The group's traits (JSON text, ``{}`` when none were sent); None for a group never seen."""
    traits, known = client.query(GROUP_SQL, parameters={"group": group_id}).result_rows[0]
    return (traits or "{}") if known else None


# ---------------------------------------------------------------------------------------------
# Engage audiences. Only ids with an entry for an audience can decide a profile's membership,
# and every such entry is in id_state_by_audience (highest version per (audience, id) = the
# id's current entry), so no other state has to be read: per (audience, profile) the entry
# with the newest event time wins (ties: larger id), as in the audience_membership view.

AUDIENCE_MEMBERS_SQL = """
SELECT audience, profile_id
FROM
(
    SELECT
        entries.audience AS audience,
        if(mapping.profile_id = '', entries.id, mapping.profile_id) AS profile_id,
        argMax(entries.entry.1, (entries.entry.2, entries.id)) AS member
    FROM
    (
        SELECT audience, id, argMax((member, coalesce(toUnixTimestamp64Micro(time), 0)), version) AS entry
        FROM id_state_by_audience
        WHERE {audience:String} = '' OR audience = {audience:String}
        GROUP BY audience, id
    ) AS entries
    LEFT JOIN
    (
        SELECT id, argMax(profile_id, version) AS profile_id
        FROM id_mapping
        WHERE id IN
        (
            SELECT id FROM id_state_by_audience WHERE {audience:String} = '' OR audience = {audience:String}
        )
        GROUP BY id
    ) AS mapping ON mapping.id = entries.id
    GROUP BY audience, profile_id
)
WHERE member = 1
"""

AUDIENCE_SIZES_SQL = f"""
SELECT audiences.audience, count(members.profile_id)
FROM (SELECT DISTINCT audience FROM id_state_by_audience) AS audiences
LEFT JOIN ({AUDIENCE_MEMBERS_SQL}) AS members ON members.audience = audiences.audience
GROUP BY audiences.audience
ORDER BY audiences.audience
"""

AUDIENCE_PAGE_SQL = f"""
SELECT
    (SELECT count() FROM id_state_by_audience WHERE audience = {{audience:String}}) > 0 AS known,
    count() AS size,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {{after:String}})), 1, {{limit:UInt32}})
        AS page
FROM ({AUDIENCE_MEMBERS_SQL})
"""


def audience_sizes(client: Client) -> list[tuple[str, int]]:
    """Every audience ever seen with how many profiles are members now."""
    rows = client.query(AUDIENCE_SIZES_SQL, parameters={"audience": ""}).result_rows
    return [(str(audience), int(size)) for audience, size in rows]


def audience_members(client: Client, audience: str, after: str, limit: int) -> tuple[int, list[str]] | None:
    """(size, the first ``limit`` member profile ids after ``after``); None for an unknown audience."""
    parameters = {"audience": audience, "after": after, "limit": limit}
    known, size, page = client.query(AUDIENCE_PAGE_SQL, parameters=parameters).result_rows[0]
    return (int(size), list(page)) if known else None
