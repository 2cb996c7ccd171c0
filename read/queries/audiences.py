"""Audiences of both systems: Engage's (identify calls, identity rule 7) and Feedhouse's own.

Engage audiences: only ids with an entry for an audience can decide a profile's membership,
and every such entry is in ``id_state_by_audience`` (highest version per (audience, id) = the
id's current entry), so no other state has to be read: per (audience, profile) the entry with
the newest event time wins (ties: larger id), as in the ``audience_membership`` view.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from feedhouse.read.sql import compose, one, rows

AUDIENCE_MEMBERS = """
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
        SELECT id, profile_id
        FROM id_mapping_kv
        WHERE id IN
        (
            SELECT id FROM id_state_by_audience WHERE {audience:String} = '' OR audience = {audience:String}
        )
    ) AS mapping ON mapping.id = entries.id
    GROUP BY audience, profile_id
)
WHERE member = 1
"""

AUDIENCE_SIZES_SQL = compose(
    """
SELECT audiences.audience, count(members.profile_id)
FROM (SELECT DISTINCT audience FROM id_state_by_audience) AS audiences
LEFT JOIN ($members) AS members ON members.audience = audiences.audience
GROUP BY audiences.audience
ORDER BY audiences.audience
""",
    members=AUDIENCE_MEMBERS,
)

AUDIENCE_PAGE_SQL = compose(
    """
SELECT
    (SELECT count() FROM id_state_by_audience WHERE audience = {audience:String}) > 0 AS known,
    count() AS size,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {after:String})), 1, {limit:UInt32})
        AS page
FROM ($members)
""",
    members=AUDIENCE_MEMBERS,
)


def audience_sizes(client: Client) -> list[tuple[str, int]]:
    """Every audience ever seen with how many profiles are members now."""
    return [(str(audience), int(size)) for audience, size in rows(client, AUDIENCE_SIZES_SQL, audience="")]


def audience_members(client: Client, audience: str, after: str, limit: int) -> tuple[int, list[str]] | None:
    """(size, the first ``limit`` member profile ids after ``after``); None for an unknown audience."""
    known, size, page = one(client, AUDIENCE_PAGE_SQL, audience=audience, after=after, limit=limit)
    return (int(size), list(page)) if known else None


# ---- Feedhouse's own audiences and computed traits (docs/audiences.md) ----------------------
#
# Definitions are rows of ``definitions`` (newest version per key, deleted ones dropped); values
# are the newest change per (computation, profile) in ``computed_current`` (by definition) and
# ``computed_by_profile`` (by profile), both ReplacingMergeTrees read with argMax(..., seq).

CURRENT_DEFINITIONS = """
    SELECT key, state.1 AS kind, state.2 AS computation_id, JSONExtractString(state.4, 'name') AS name
    FROM
    (
        SELECT key, argMax((kind, computation_id, deleted, body), version) AS state
        FROM definitions
        GROUP BY key
    )
    WHERE state.3 = 0
"""

COMPUTED_AUDIENCE_SIZES_SQL = compose(
    """
SELECT d.key, d.name, coalesce(sizes.members, 0)
FROM ($definitions) AS d
LEFT JOIN
(
    SELECT computation_id, countIf(member) AS members
    FROM
    (
        SELECT computation_id, profile_id, argMax(member, seq) = 1 AS member
        FROM computed_current
        WHERE computation_id IN (SELECT computation_id FROM ($definitions) WHERE kind = 'audience')
        GROUP BY computation_id, profile_id
    )
    GROUP BY computation_id
) AS sizes ON sizes.computation_id = d.computation_id
WHERE d.kind = 'audience'
ORDER BY d.key
""",
    definitions=CURRENT_DEFINITIONS,
)

# The current members of the Feedhouse audience {audience:String} (none when there is no such
# audience), all of them (a people filter's candidates, beside Engage's: read.queries.search) or
# those among {profiles:Array(String)}.
_COMPUTED_MEMBERS = """
SELECT profile_id
FROM computed_current
WHERE computation_id IN
    (SELECT computation_id FROM ($definitions) WHERE key = {audience:String} AND kind = 'audience')
    $among
GROUP BY computation_id, profile_id
HAVING argMax(member, seq) = 1
"""
COMPUTED_MEMBERS_SQL = compose(_COMPUTED_MEMBERS, definitions=CURRENT_DEFINITIONS, among="")
COMPUTED_MEMBERS_AMONG_SQL = compose(
    _COMPUTED_MEMBERS,
    definitions=CURRENT_DEFINITIONS,
    among="AND profile_id IN (SELECT arrayJoin({profiles:Array(String)}))",
)

COMPUTED_AUDIENCE_PAGE_SQL = compose(
    """
SELECT
    (SELECT count() FROM ($definitions) WHERE key = {audience:String} AND kind = 'audience') > 0 AS known,
    count() AS size,
    arraySlice(arraySort(groupArrayIf(profile_id, profile_id > {after:String})), 1, {limit:UInt32}) AS page
FROM ($members)
""",
    definitions=CURRENT_DEFINITIONS,
    members=COMPUTED_MEMBERS_SQL,
)

# One profile's current value of each definition it has one, (computation_id, (member, value JSON
# text, entered_at, exited_at, changed_at)) with times in microseconds; then the current
# definitions of those found. Two small queries are cheaper in chDB than one joining them (11 ms
# against 3 + 4 ms, and 3 ms alone for the many profiles with no value; bench.read_api).
PROFILE_VALUES_SQL = """
SELECT
    computation_id,
    argMax(
        (
            member, value, toUnixTimestamp64Micro(entered_at), toUnixTimestamp64Micro(exited_at),
            toUnixTimestamp64Micro(changed_at)
        ),
        seq
    ) AS state
FROM computed_by_profile
WHERE profile_id = {profile:String}
GROUP BY computation_id
"""
DEFINED_SQL = compose(
    "SELECT computation_id, key, kind FROM ($definitions) WHERE computation_id IN {ids:Array(String)}",
    definitions=CURRENT_DEFINITIONS,
)


def computed_audience_sizes(client: Client) -> list[tuple[str, str, int]]:
    """Every Feedhouse audience: (key, name, members now)."""
    return [(str(key), str(name), int(size)) for key, name, size in rows(client, COMPUTED_AUDIENCE_SIZES_SQL)]


def computed_audience_members(
    client: Client, audience: str, after: str, limit: int
) -> tuple[int, list[str]] | None:
    """Like :func:`audience_members`, for a Feedhouse audience; None when there is none of that key."""
    known, size, page = one(client, COMPUTED_AUDIENCE_PAGE_SQL, audience=audience, after=after, limit=limit)
    return (int(size), list(page)) if known else None


def computed_members_among(client: Client, audience: str, profile_ids: list[str]) -> set[str]:
    """Those of ``profile_ids`` that are members of the Feedhouse audience ``audience`` now."""
    if not audience or not profile_ids:
        return set()
    found = rows(client, COMPUTED_MEMBERS_AMONG_SQL, audience=audience, profiles=profile_ids)
    return {str(profile) for (profile,) in found}


@dataclass(frozen=True, slots=True)
class ComputedRow:
    """A profile's current value of one Feedhouse definition (times in microseconds)."""

    key: str
    kind: str  # "audience" or "trait"
    member: bool
    value: str  # a trait's JSON text, '' for none
    entered_at: int | None
    exited_at: int | None
    changed_at: int


def profile_computed(client: Client, profile_id: str) -> list[ComputedRow]:
    """A profile's Feedhouse audiences and computed traits (of definitions that exist), by key."""
    values = rows(client, PROFILE_VALUES_SQL, profile=profile_id)
    if not values:
        return []
    defined = {
        str(computation): (str(key), str(kind))
        for computation, key, kind in rows(client, DEFINED_SQL, ids=[str(v[0]) for v in values])
    }
    found = [
        ComputedRow(*defined[str(computation)], bool(member), str(value), entered, exited, int(changed))
        for computation, (member, value, entered, exited, changed) in values
        if str(computation) in defined
    ]
    return sorted(found, key=lambda row: row.key)
