"""People: profiles matching filters on their merged state, and the list of every profile.

Matching starts from candidate ids in a lookup table (``id_state_by_trait|group|audience``;
for an audience also the members of Feedhouse's audience of that key) and verifies each
candidate against the merged state of *all* ids of its profile, with the rules of the
``profiles`` view (per trait / audience / the group: newest event time wins, ties to the larger
id): a lookup row may be stale, the merged state never is. An audience filter passes a member of
either system's audience of its key.

Intermediate sets are scalar arrays, computed once per query (a CTE is re-run at every
reference), and always probed with ``IN (SELECT arrayJoin(array))``: ``IN array`` with a
large constant array takes seconds in the primary-key analysis (measured: 17k ids, 14 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from feedhouse.read.queries.audiences import AUDIENCE_MEMBERS, COMPUTED_MEMBERS_SQL
from feedhouse.read.queries.profiles import CURRENT_STATE, MEMBERS_OF, IdStateRow
from feedhouse.read.sql import compose, one, rows

CANDIDATES_BY_TRAIT = """
SELECT id FROM id_state_by_trait
WHERE key = {keys:Array(String)}[1] AND value = {values:Array(String)}[1]
"""
CANDIDATES_BY_GROUP = "SELECT id FROM id_state_by_group WHERE group_id = {group:String}"
# An audience filter matches the members of either system's audience of that key: Engage's
# (lookup rows of ids) and Feedhouse's own (current members by profile id, itself an id).
CANDIDATES_BY_AUDIENCE = compose(
    """
SELECT id FROM id_state_by_audience WHERE audience = {audience:String} AND member = 1
UNION ALL
SELECT profile_id AS id FROM ($computed)
""",
    computed=COMPUTED_MEMBERS_SQL,
)

# The state of every id of the candidates' profiles, one row per (profile, id).
_MEMBER_STATES = compose(
    """
SELECT pair.2 AS profile_id, pair.1 AS id, current.state AS state
FROM (SELECT arrayJoin(arrayZip(members.1, members.2)) AS pair) AS member_ids
INNER JOIN ($current) AS current ON current.id = member_ids.pair.1
""",
    current=compose(CURRENT_STATE, ids="(SELECT arrayJoin(members.1))"),
)

MATCHING_PROFILES = """
WITH
    (SELECT groupUniqArray(id) FROM ($candidates)) AS candidate_ids,
    -- Each candidate's current profile (an unmapped id is its own profile).
    (
        SELECT groupUniqArray(if(mapping.profile_id = '', candidate.id, mapping.profile_id))
        FROM (SELECT arrayJoin(candidate_ids) AS id) AS candidate
        LEFT JOIN
        (
            SELECT id, profile_id
            FROM id_mapping_kv
            WHERE id IN (SELECT arrayJoin(candidate_ids))
        ) AS mapping ON mapping.id = candidate.id
    ) AS candidate_profiles,
    -- Every id of those profiles.
$members
SELECT
    count() AS total,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {after:String})), 1, {limit:UInt32})
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
                JSONExtractBool(state.5, {audience:String}, 'member'),
                (coalesce(JSONExtract(state.5, {audience:String}, 'time', 'Nullable(Int64)'), 0), id),
                JSONHas(state.5, {audience:String})
            ) AS member
        FROM ($member_states)
        LEFT ARRAY JOIN {keys:Array(String)} AS key
        GROUP BY profile_id, key
    )
    GROUP BY profile_id
    HAVING
        -- Traits are compared as the lookup table renders them: strings unquoted, else JSON text.
        countIf(
            has_key > 0
            AND if(JSONType(raw) = 'String', JSONExtractString(raw), raw)
                = {values:Array(String)}[indexOf({keys:Array(String)}, key)]
        ) = length({keys:Array(String)})
        AND ({group:String} = '' OR any(group_id) = {group:String})
        AND ({audience:String} = '' OR any(member) = 1 OR profile_id IN ($computed))
)
"""
_MATCHING = {
    name: compose(
        MATCHING_PROFILES,
        candidates=candidates,
        members=compose(MEMBERS_OF, profiles="candidate_profiles"),
        member_states=_MEMBER_STATES,
        computed=COMPUTED_MEMBERS_SQL,
    )
    for name, candidates in (
        ("trait", CANDIDATES_BY_TRAIT),
        ("group", CANDIDATES_BY_GROUP),
    )
}

# An audience alone needs no verification: both systems decide membership per profile already
# (Engage's: the newest entry among the profile's ids, as the merged state would;
# ``read.queries.audiences``), so the answer is their union, without reading any member's state
# (at 10M events, 107k members: 6.8 s verified against the merged states, on a slow day).
AUDIENCE_ONLY_SQL = compose(
    """
SELECT
    count() AS total,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {after:String})), 1, {limit:UInt32}) AS page
FROM
(
    SELECT DISTINCT profile_id
    FROM (SELECT profile_id FROM ($engage) UNION ALL SELECT profile_id FROM ($computed))
)
""",
    engage=AUDIENCE_MEMBERS,
    computed=COMPUTED_MEMBERS_SQL,
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
    # Candidates come from the most selective lookup the query allows.
    if query.traits:
        statement = _MATCHING["trait"]
    elif query.group:
        statement = _MATCHING["group"]
    elif query.audience:
        total, page = one(client, AUDIENCE_ONLY_SQL, audience=query.audience, after=after, limit=limit)
        return int(total), list(page)
    else:
        raise ValueError("matching_profiles needs at least one filter")
    total, page = one(
        client,
        statement,
        keys=[key for key, _ in query.traits],
        values=[value for _, value in query.traits],
        group=query.group,
        audience=query.audience,
        after=after,
        limit=limit,
    )
    return int(total), list(page)


# Every profile, by canonical id: ids from the three places an id can be known (events through
# person_recency, which a deletion masks with a mutation: applied on the fly), in id order, each
# kept when it resolves to itself.
LIST_PROFILES_SQL = """
WITH
    (
        SELECT groupArray(id)
        FROM
        (
            SELECT id
            FROM
            (
                -- person_recency: one row per person_key of events, 10x fewer rows than events.
                (SELECT DISTINCT person_key AS id FROM person_recency WHERE person_key > {after:String}
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
            SELECT id, profile_id
            FROM id_mapping_kv
            WHERE id IN (SELECT arrayJoin(scanned)) AND profile_id != id
        )
    ) AS merged_away
SETTINGS apply_mutations_on_fly = 1
"""


def list_profiles(client: Client, after: str, limit: int) -> list[str]:
    """The first ``limit`` canonical profile ids after ``after``, in id order."""
    found: list[str] = []
    while len(found) < limit:
        scan = (limit - len(found)) * 2 + 16
        scanned, merged_away = one(client, LIST_PROFILES_SQL, after=after, scan=scan)
        elsewhere = set(merged_away)
        found += [identifier for identifier in scanned if identifier not in elsewhere]
        if len(scanned) < scan:
            break
        after = scanned[-1]
    return found[:limit]


# Compact rows for a page of profiles: every id's current state and the newest event time.
SUMMARIES_SQL = compose(
    """
WITH
$members
SELECT
    'state' AS part, profile_id, id,
    state.1 AS traits, state.2 AS trait_times, state.3 AS group_id,
    toUnixTimestamp64Micro(state.4) AS group_time, state.5 AS audiences
FROM ($member_states)
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
""",
    members=compose(MEMBERS_OF, profiles="{profiles:Array(String)}"),
    member_states=_MEMBER_STATES,
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
    found = rows(client, SUMMARIES_SQL, profiles=list(profile_ids))
    for part, profile, identifier, traits, trait_times, group_id, time, audiences in found:
        if part == "state":
            states[profile].append(IdStateRow(identifier, traits, trait_times, group_id, time, audiences))
        elif time is not None:
            last_seen[profile] = max(last_seen.get(profile, time), time)
    return ProfileSummaryRows(states, last_seen)


# Candidate ids of the most selective filter (stale lookup rows included), at most {limit}: the
# people searches verify them on merged state (feedhouse.read.matching).
CANDIDATE_IDS_SQL = {
    name: f"SELECT DISTINCT id FROM ({candidates}) LIMIT {{limit:UInt32}}"
    for name, candidates in (
        ("trait", CANDIDATES_BY_TRAIT),
        ("group", CANDIDATES_BY_GROUP),
        ("audience", CANDIDATES_BY_AUDIENCE),
    )
}


def _selective(query: ProfileQuery) -> str:
    if query.traits:
        return "trait"
    if query.group:
        return "group"
    if query.audience:
        return "audience"
    raise ValueError("the query has no filter")


def _bound(query: ProfileQuery) -> dict[str, object]:
    return {
        "keys": [key for key, _ in query.traits],
        "values": [value for _, value in query.traits],
        "group": query.group,
        "audience": query.audience,
    }


def candidate_ids(client: Client, query: ProfileQuery, limit: int) -> list[str]:
    """Up to ``limit`` candidate ids of ``query``'s most selective filter (one key range)."""
    found = rows(client, CANDIDATE_IDS_SQL[_selective(query)], **_bound(query), limit=limit)
    return [str(identifier) for (identifier,) in found]
