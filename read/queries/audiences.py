"""Engage audiences: sizes and members.

Only ids with an entry for an audience can decide a profile's membership, and every such entry
is in ``id_state_by_audience`` (highest version per (audience, id) = the id's current entry), so
no other state has to be read: per (audience, profile) the entry with the newest event time
wins (ties: larger id), as in the ``audience_membership`` view.
"""

from __future__ import annotations

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
