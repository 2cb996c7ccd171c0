"""Timelines: a profile's events and the global feed, newest first by (timestamp, message_id).

Events are one row per messageId, the newest receipt: candidates come from the time-ordered
lookup tables, then each candidate's winning copy is read from ``events`` (see
``WINNERS_SQL``). Pages are keyset-paginated on (timestamp, messageId).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.tables import EVENTS
from feedhouse.read.sql import compose, rows


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event (the winning copy of its messageId); JSON columns as stored.

    Fields are the ``events`` columns the read side uses (times as epoch microseconds); a new
    event column appears here only once the API shows it.
    """

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


EVENT_FIELDS = tuple(field.name for field in fields(EventRow))
EVENT_COLUMNS = EVENTS.select_list(EVENT_FIELDS)

# Filters shared by the timeline and the feed. An empty array means "no filter"; page events
# are hidden unless asked for (hidden=1) or explicitly listed in the types; start / end bound
# the event time (has_start / has_end say whether they apply).
COMMON_FILTERS = """
    AND (empty({types:Array(String)}) OR type IN {types:Array(String)})
    AND (empty({events:Array(String)}) OR event IN {events:Array(String)})
    AND (empty({exclude:Array(String)}) OR event NOT IN {exclude:Array(String)})
    AND ({hidden:UInt8} = 1 OR type != 'page' OR has({types:Array(String)}, 'page'))
    AND ({has_start:UInt8} = 0 OR timestamp >= fromUnixTimestamp64Micro({start_ts:Int64}, 'UTC'))
    AND ({has_end:UInt8} = 0 OR timestamp < fromUnixTimestamp64Micro({end_ts:Int64}, 'UTC'))
"""
# Newest first: strictly below the cursor (the plain bound on timestamp lets the primary key prune).
EVENT_FILTERS = compose(
    """
    AND ({first_page:UInt8} = 1
         OR (timestamp, message_id)
            < (fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'), {before_id:String}))
    AND ({first_page:UInt8} = 1 OR timestamp <= fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'))
$common""",
    common=COMMON_FILTERS,
)
# Oldest first (the Profile API's sort=asc): strictly above the cursor.
ASCENDING_FILTERS = compose(
    """
    AND ({first_page:UInt8} = 1
         OR (timestamp, message_id)
            > (fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'), {before_id:String}))
    AND ({first_page:UInt8} = 1 OR timestamp >= fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'))
$common""",
    common=COMMON_FILTERS,
)

# Both pages go in two steps, so that only the page's rows are read in full:
# 1. candidate positions, newest first, from a lookup table holding the small columns of every
#    event (clickhouse/migrations 0007, 0008): for a timeline the profile's key ranges of
#    ``events_by_person_time`` (ordered by person, then time), for the feed the tail of
#    ``events_by_time`` (ordered by time, read in order);
# 2. the winning copy (newest receipt) of each candidate messageId from ``events``, by primary key.
#    FINAL is not used: it merges every column it reads over the whole ranges (a heavy profile's
#    next page took 242 ms at 10M events; a merged feed 0.3-0.5 s).
# A candidate whose winner sits at another position (a redelivery with another timestamp) is
# dropped: every message is shown once, at its winner's position. Copies never differ in type or
# event name, so the filters may be applied to candidates.
_TIMELINE_CANDIDATES = """
SELECT person_key, message_id, toUnixTimestamp64Micro(timestamp) AS ts
FROM events_by_person_time
WHERE person_key IN {ids:Array(String)}
$filters
ORDER BY timestamp $direction, message_id $direction
LIMIT {limit:UInt32}
"""
TIMELINE_CANDIDATES_SQL = compose(_TIMELINE_CANDIDATES, filters=EVENT_FILTERS, direction="DESC")
TIMELINE_ASCENDING_SQL = compose(_TIMELINE_CANDIDATES, filters=ASCENDING_FILTERS, direction="ASC")

FEED_CANDIDATES_SQL = compose(
    """
SELECT person_key, message_id, toUnixTimestamp64Micro(timestamp) AS ts
FROM events_by_time
WHERE 1 $filters
ORDER BY timestamp DESC, message_id DESC
LIMIT {limit:UInt32}
""",
    filters=EVENT_FILTERS,
)

# The newest receipt of each candidate message, read once from ``events`` by primary key.
WINNERS_SQL = compose(
    """
SELECT $columns
FROM events
WHERE person_key IN {person_keys:Array(String)}
  AND (person_key, message_id) IN {keys:Array(Tuple(String, String))}
ORDER BY received_at DESC
LIMIT 1 BY person_key, message_id
""",
    columns=EVENT_COLUMNS,
)
# The feed's winners also say which profile each belongs to now (an unmapped id is its own).
FEED_WINNERS_SQL = compose(
    """
WITH
    (
        SELECT CAST((groupArray(id), groupArray(profile_id)), 'Map(String, String)')
        FROM
        (
            SELECT id, profile_id
            FROM id_mapping_kv
            WHERE id IN {person_keys:Array(String)}
        )
    ) AS profiles
SELECT $columns, if(profiles[person_key] = '', person_key, profiles[person_key]) AS profile_id
FROM events
WHERE person_key IN {person_keys:Array(String)}
  AND (person_key, message_id) IN {keys:Array(Tuple(String, String))}
ORDER BY received_at DESC
LIMIT 1 BY person_key, message_id
""",
    columns=EVENT_COLUMNS,
)


@dataclass(frozen=True, slots=True)
class EventFilter:
    """A page request: at most ``limit`` events strictly past the cursor ``before`` (timestamp µs,
    messageId), newest first, or oldest first when ``ascending`` (the cursor is then a lower bound).
    """

    limit: int
    before: tuple[int, str] | None = None
    types: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    hidden: bool = False
    exclude: tuple[str, ...] = ()
    start: int | None = None  # event time bounds, epoch µs: start <= timestamp < end
    end: int | None = None
    ascending: bool = False

    def parameters(self) -> dict[str, Any]:
        before_ts, before_id = self.before if self.before is not None else (0, "")
        return {
            "first_page": 0 if self.before is not None else 1,
            "before_ts": before_ts,
            "before_id": before_id,
            "types": list(self.types),
            "events": list(self.events),
            "exclude": list(self.exclude),
            "hidden": 1 if self.hidden else 0,
            "has_start": 0 if self.start is None else 1,
            "start_ts": self.start or 0,
            "has_end": 0 if self.end is None else 1,
            "end_ts": self.end or 0,
            "limit": self.limit,
        }

    def past(self, position: tuple[int, str]) -> EventFilter:
        """The same request, continuing past ``position``."""
        return dataclasses.replace(self, before=position)


def timeline(client: Client, ids: Sequence[str], page: EventFilter) -> list[EventRow]:
    """The newest events of ``ids`` (a profile's) matching ``page``, newest first."""
    if not ids:
        return []
    statement = TIMELINE_ASCENDING_SQL if page.ascending else TIMELINE_CANDIDATES_SQL
    found = _paged(client, page, statement, {"ids": list(ids)}, WINNERS_SQL)
    return [event for event, _ in found]


FeedEvent = tuple[EventRow, str | None]  # an event and the profile it resolves to (None: no real id)


def feed(client: Client, page: EventFilter) -> list[FeedEvent]:
    """The newest events of every profile matching ``page``, each with its resolved profile."""
    if page.ascending:
        raise ValueError("the feed pages newest first only")
    return _paged(client, page, FEED_CANDIDATES_SQL, {}, FEED_WINNERS_SQL)


def _paged(
    client: Client, page: EventFilter, candidates_sql: str, where: dict[str, Any], winners_sql: str
) -> list[FeedEvent]:
    """Up to ``page.limit`` winning events below the cursor: candidates, then their winners.

    Usually two queries. Candidates that are superseded copies are skipped and the scan goes on,
    so a page has ``page.limit`` events whenever that many exist below the cursor.
    """
    found: list[FeedEvent] = []
    cursor = page
    while True:
        # A little slack: a redelivered copy costs a candidate without yielding an event.
        scan = page.limit - len(found) + 8
        listed = rows(client, candidates_sql, **where, **{**cursor.parameters(), "limit": scan})
        # Identical copies (same position) count once.
        candidates = list(dict.fromkeys((str(key), str(mid), int(ts)) for key, mid, ts in listed))
        if not candidates:
            return found
        winners = _winning_copies(client, candidates, winners_sql)
        for person_key, message_id, ts in candidates:
            winner = winners.get((person_key, message_id))
            if winner is not None and winner[0].timestamp == ts:
                found.append(winner)
                if len(found) == page.limit:
                    return found
        if len(listed) < scan:
            return found
        last = candidates[-1]
        cursor = page.past((last[2], last[1]))


def _winning_copies(
    client: Client, candidates: Sequence[tuple[str, str, int]], statement: str
) -> dict[tuple[str, str], FeedEvent]:
    keys = [(person_key, message_id) for person_key, message_id, _ in candidates]
    found = rows(client, statement, person_keys=sorted({key for key, _ in keys}), keys=keys)
    width = len(EVENT_FIELDS)
    winners: dict[tuple[str, str], FeedEvent] = {}
    for row in found:
        event = EventRow(*row[:width])
        # Timelines know their profile; the feed's statement adds each event's profile id.
        profile = (row[width] or None) if len(row) > width else None
        winners[(event.person_key, event.message_id)] = (event, profile)
    return winners
