"""An audience's size over time: entries and exits per day, for either system's audiences.

**Feedhouse's audiences** log every entry and exit in ``computed_changes`` (one row per change,
``member`` after it), so their history is exact: entries and exits per UTC day of
``changed_at``, for the computation of the key's current definition (a deleted and re-created
key is a new computation: the old one's changes are not its history).

**Engage's audiences** (identify calls): each id keeps, per audience, its membership now and
when it last entered and last exited (docs/identity.md, rule 7); per profile the entry with the
newest event time wins, as in the ``audience_membership`` view. From those, a profile counts
as a member from its last entry (and, when it is no longer a member, until its last exit): the
daily size is the running sum of +1 per entry day and -1 per exit day. Earlier stays in the
audience (entered, exited, entered again) are not kept by the state, so the history is exact
for the latest stay of each profile.

:func:`day_changes` serves both (``computed_by``), :func:`daily_history` turns either into the
size at the end of each day of a window.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from feedhouse.read.queries.audiences import CURRENT_DEFINITIONS
from feedhouse.read.sql import compose, rows

ENGAGE = "engage"
FEEDHOUSE = "feedhouse"
SYSTEMS = (ENGAGE, FEEDHOUSE)
DAY = 86400

# (day, entries, exits) of one Engage audience: per (audience, id) its current entry (highest
# version), per profile the newest by event time, then entries (+1) and exits (-1) by day.
# (The outer aliases are not "entered"/"exited": ClickHouse aliases are query-wide and would
# shadow the inner columns of those names.)
ENGAGE_CHANGES_SQL = """
SELECT change.1 AS day, countIf(change.2 > 0) AS entries, countIf(change.2 < 0) AS exits
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
        SELECT id, profile_id
        FROM id_mapping_kv
        WHERE id IN (SELECT id FROM id_state_by_audience WHERE audience = {audience:String})
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


# (day, entries, exits) of the Feedhouse audience of a key: its current definition's changes.
# An audience's change is always a flip (audiences/changes.py records only differences), so
# member = 1 is an entry and member = 0 an exit.
FEEDHOUSE_CHANGES_SQL = compose(
    """
SELECT toUnixTimestamp(toStartOfDay(changed_at)) AS day, countIf(member = 1) AS entered,
       countIf(member = 0) AS exited
FROM computed_changes
WHERE kind = 'audience'
  AND computation_id IN
      (SELECT computation_id FROM ($definitions) WHERE key = {audience:String} AND kind = 'audience')
GROUP BY day
ORDER BY day
""",
    definitions=CURRENT_DEFINITIONS,
)


def day_changes(client: Client, audience: str, computed_by: str = ENGAGE) -> list[tuple[int, int, int]]:
    """(epoch second of a UTC day, entries, exits) of the audience ``computed_by`` computes, oldest first."""
    if computed_by not in SYSTEMS:
        raise ValueError(f"computed_by must be one of {SYSTEMS}, not {computed_by!r}")
    statement = FEEDHOUSE_CHANGES_SQL if computed_by == FEEDHOUSE else ENGAGE_CHANGES_SQL
    return [
        (int(day), int(entered), int(exited))
        for day, entered, exited in rows(client, statement, audience=audience)
    ]


def size_changes(client: Client, audience: str, computed_by: str = ENGAGE) -> list[tuple[int, int]]:
    """(epoch second of a UTC day, members gained minus lost that day), oldest first."""
    return [(day, entered - exited) for day, entered, exited in day_changes(client, audience, computed_by)]


def daily_sizes(changes: list[tuple[int, int]], first_day: int, last_day: int) -> list[tuple[int, int]]:
    """The size at the end of each day from ``first_day`` to ``last_day`` (epoch seconds of days)."""
    size = sum(delta for day, delta in changes if day < first_day)
    by_day = dict(changes)
    sizes = []
    day = first_day
    while day <= last_day:
        size += by_day.get(day, 0)
        sizes.append((day, size))
        day += DAY
    return sizes


def daily_history(
    changes: list[tuple[int, int, int]], first_day: int, last_day: int
) -> list[tuple[int, int, int, int]]:
    """(day, size at its end, entries, exits) for each day from ``first_day`` to ``last_day``."""
    by_day = {day: (entered, exited) for day, entered, exited in changes}
    sizes = daily_sizes([(day, entered - exited) for day, entered, exited in changes], first_day, last_day)
    return [(day, size, *by_day.get(day, (0, 0))) for day, size in sizes]
