"""An audience's size over time, from each profile's last entry into and exit from it.

Each id keeps, per audience, its membership now and when it last entered and last exited
(docs/identity.md, rule 7); per profile the entry with the newest event time wins, as in the
``audience_membership`` view. From those, a profile counts as a member from its last entry
(and, when it is no longer a member, until its last exit): the daily size is the running sum
of +1 per entry day and -1 per exit day. Earlier stays in the audience (entered, exited, entered
again) are not kept by the state, so the history is exact for the latest stay of each profile.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from feedhouse.read.sql import rows

# (day, change in size) for one audience: per (audience, id) its current entry (highest
# version), per profile the newest by event time, then entries (+1) and exits (-1) by day.
SIZE_CHANGES_SQL = """
SELECT change.1 AS day, sum(change.2) AS delta
FROM
(
    SELECT
        argMax(tuple(entry.1, entry.3, entry.4), (entry.2, entries.id)) AS newest,
        newest.1 AS member,
        newest.2 AS entered,
        newest.3 AS exited
    FROM
    (
        SELECT
            id,
            argMax(
                (member, coalesce(toUnixTimestamp64Micro(time), 0), entered_at, exited_at), version
            ) AS entry
        FROM id_state_by_audience
        WHERE audience = {audience:String}
        GROUP BY id
    ) AS entries
    LEFT JOIN
    (
        SELECT id, argMax(profile_id, version) AS profile_id
        FROM id_mapping
        WHERE id IN (SELECT id FROM id_state_by_audience WHERE audience = {audience:String})
        GROUP BY id
    ) AS mapping ON mapping.id = entries.id
    GROUP BY if(mapping.profile_id = '', entries.id, mapping.profile_id)
)
ARRAY JOIN arrayFilter(
    c -> c.2 != 0,
    [
        (toUnixTimestamp(toStartOfDay(coalesce(entered, toDateTime64(0, 6, 'UTC')))),
         if(entered IS NOT NULL AND (member = 1 OR (exited IS NOT NULL AND exited > entered)), 1, 0)),
        (toUnixTimestamp(toStartOfDay(coalesce(exited, toDateTime64(0, 6, 'UTC')))),
         if(member = 0 AND entered IS NOT NULL AND exited IS NOT NULL AND exited > entered, -1, 0))
    ]
) AS change
GROUP BY day
ORDER BY day
"""


def size_changes(client: Client, audience: str) -> list[tuple[int, int]]:
    """(epoch second of a UTC day, members gained minus lost that day), oldest first."""
    return [(int(day), int(delta)) for day, delta in rows(client, SIZE_CHANGES_SQL, audience=audience)]


def daily_sizes(changes: list[tuple[int, int]], first_day: int, last_day: int) -> list[tuple[int, int]]:
    """The size at the end of each day from ``first_day`` to ``last_day`` (epoch seconds of days)."""
    size = sum(delta for day, delta in changes if day < first_day)
    by_day = dict(changes)
    sizes = []
    day = first_day
    while day <= last_day:
        size += by_day.get(day, 0)
        sizes.append((day, size))
        day += 86400
    return sizes
