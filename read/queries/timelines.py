"""Timelines: a profile's events and the global feed, newest first by (timestamp, message_id).

Events are one row per messageId, the newest receipt: ``FINAL`` over a profile's primary-key
ranges for the timeline; for the feed, the winner of each candidate found from the small
columns (see ``FEED_EVENTS_SQL``). Pages are keyset-paginated on (timestamp, messageId).
"""

from __future__ import annotations

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
# are hidden unless asked for (hidden=1) or explicitly listed in the types.
EVENT_FILTERS = """
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
TIMELINE_SQL = compose(
    """
SELECT $columns
FROM events FINAL
WHERE person_key IN {ids:Array(String)}
$filters
ORDER BY timestamp DESC, message_id DESC
LIMIT {limit:UInt32}
""",
    columns=EVENT_COLUMNS,
    filters=EVENT_FILTERS,
)

# The global feed cannot use the ordering key (person_key first). It pages in two steps:
# 1. candidate positions, newest first, from the small columns only and within a time window
#    below the cursor (the timestamp minmax index and part ranges skip older data; ClickHouse's
#    top-K filter prunes the rest), widened until the page is full or the window is unbounded;
# 2. the winning copy (newest receipt) of each candidate messageId, by primary key. FINAL is
#    not used here: it would read whole granules of every column (0.5 s at 10M events); the
#    winner is found from the small columns, then only the winning rows are read in full.
# A candidate whose winner sits at another position (a redelivery with another timestamp) is
# dropped: every message is shown once, at its winner's position.
FEED_CANDIDATES_SQL = compose(
    """
WITH
    if(
        {first_page:UInt8} = 1,
        (SELECT max(timestamp) FROM events),
        fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC')
    ) AS newest
SELECT person_key, message_id, toUnixTimestamp64Micro(timestamp) AS ts
FROM events
WHERE ({window_seconds:UInt32} = 0 OR timestamp >= newest - toIntervalSecond({window_seconds:UInt32}))
$filters
ORDER BY timestamp DESC, message_id DESC
LIMIT {limit:UInt32}
""",
    filters=EVENT_FILTERS,
)

FEED_EVENTS_SQL = compose(
    """
WITH
    (
        SELECT CAST((groupArray(id), groupArray(profile_id)), 'Map(String, String)')
        FROM
        (
            SELECT id, argMax(profile_id, version) AS profile_id
            FROM id_mapping
            WHERE id IN {person_keys:Array(String)}
            GROUP BY id
        )
    ) AS profiles
SELECT $columns, if(profiles[person_key] = '', person_key, profiles[person_key]) AS profile_id
FROM events
WHERE person_key IN {person_keys:Array(String)}
  AND (person_key, message_id, received_at) IN
  (
      SELECT person_key, message_id, max(received_at)
      FROM events
      WHERE person_key IN {person_keys:Array(String)}
        AND (person_key, message_id) IN {keys:Array(Tuple(String, String))}
      GROUP BY person_key, message_id
  )
LIMIT 1 BY person_key, message_id
""",
    columns=EVENT_COLUMNS,
)
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


def timeline(client: Client, ids: Sequence[str], page: EventFilter) -> list[EventRow]:
    """The newest events of ``ids`` (a profile's) matching ``page``, newest first."""
    return [EventRow(*row) for row in rows(client, TIMELINE_SQL, ids=list(ids), **page.parameters())]


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
    parameters = {**page.parameters(), "limit": scan}
    for window in FEED_WINDOWS:
        found = rows(client, FEED_CANDIDATES_SQL, window_seconds=window, **parameters)
        if len(found) >= scan or window == 0:
            # Identical copies (same position) count once.
            unique = dict.fromkeys((str(key), str(mid), int(ts)) for key, mid, ts in found)
            return list(unique), len(found) < scan
    raise AssertionError("the last window is unbounded")


def _winning_copies(
    client: Client, candidates: Sequence[tuple[str, str, int]]
) -> dict[tuple[str, str], FeedEvent]:
    keys = [(person_key, message_id) for person_key, message_id, _ in candidates]
    found = rows(client, FEED_EVENTS_SQL, person_keys=sorted({key for key, _ in keys}), keys=keys)
    width = len(EVENT_FIELDS)
    events = (EventRow(*row[:width]) for row in found)
    return {
        (event.person_key, event.message_id): (event, row[width] or None)
        for event, row in zip(events, found, strict=True)
    }
