"""People by last seen: the people list of the app, newest activity first, by keyset.

``person_recency`` (migration 0009) holds each person_key's newest event time, one row per key
once merged, with a projection ordered by (last_seen, person_key). Until parts merge, older rows
of a person are still there, so a page walks the projection from the cursor down and keeps a
row only when

1. it is its person_key's newest time (``person_seen_kv``, migration 0019: the greatest event
   time per person_key, a key-value table), and
2. that person_key is the most recent id of its profile (every id of the profile from
   ``profiles.members_of``; ties go to the larger id),

so each profile appears once, at its newest event, whatever merges happened since. "Last seen"
here is the newest time carried by any received copy of any event of the profile.

A live row that fails 2. never passes it later (times only grow), so the walk tombstones it
(:func:`bury`): once parts merge, later walks skip it in SQL (``deleted = 0``, migration 0021).

A predicate on merged state (:class:`feedhouse.read.queries.search.ProfileQuery`) may filter
the walk: that is how a common trait value (``plan=pro``) pages by last seen without counting
every match. Selective filters (an email) are faster from the lookup tables
(``feedhouse.read.matching``), ranked with :func:`last_seen`.

A deletion removes a person's ``person_seen_kv`` row at once and their ``person_recency`` rows
with a mutation it does not wait for (privacy/executor.py): the scan applies pending mutations on
the fly, and a row without a ``person_seen_kv`` time is never shown, so the person is gone from
the list at once.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from feedhouse.clickhouse.tables import MAX_MICROS
from feedhouse.read.queries.profiles import members_of
from feedhouse.read.sql import rows

# The next rows of person_recency below the cursor. A round of the walk is this, then the scanned
# person_keys' profiles and all their ids (``profiles.members_of``), then the newest event time
# of each of those ids (:data:`SEEN_SQL`): simple key lookups, cheaper in chDB than one query
# chaining them as nested subqueries (bench.read_api).
SCAN_SQL = """
SELECT toUnixTimestamp64Micro(last_seen) AS ts, person_key
FROM person_recency
-- The plain bound on last_seen makes ClickHouse read the by_recency_live projection.
WHERE last_seen <= fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC')
  AND deleted = 0  -- tombstones (migration 0021): ids mapped into a profile seen more recently
  AND ({first_page:UInt8} = 1
       OR (last_seen, person_key) < (fromUnixTimestamp64Micro({before_ts:Int64}, 'UTC'), {before_key:String}))
ORDER BY last_seen DESC, person_key DESC
LIMIT {limit:UInt32}
SETTINGS apply_mutations_on_fly = 1
"""

# Each id's newest event time (ids never seen are absent): key lookups in the mirror.
SEEN_SQL = """
SELECT person_key, toUnixTimestamp64Micro(last_seen)
FROM person_seen_kv
WHERE person_key IN {ids:Array(String)}
"""

# Tombstones the walk writes itself (migration 0021's column ``tomb``): the view of 0021 decides
# when an id's mapping arrives, so an id whose profile's own id is seen only later keeps a live
# row, and the oldest end of the list was mostly such rows (docs/benchmarks.md).
TOMBSTONES_SQL = """
INSERT INTO person_recency (person_key, last_seen, tomb)
SELECT row.1, fromUnixTimestamp64Micro(row.2, 'UTC'), 1
FROM (SELECT arrayJoin(arrayZip({keys:Array(String)}, {times:Array(Int64)})) AS row)
"""

log = logging.getLogger(__name__)
MAX_SCAN = 8192  # candidates in one round at most
Position = tuple[int, str]  # (last seen in epoch µs, id): the keyset position of a row


@dataclass(frozen=True, slots=True)
class RecentProfile:
    """A profile of the list: its canonical id, newest event time and every id it has."""

    profile_id: str
    last_seen: int
    ids: tuple[str, ...]
    position: Position


def recent_profiles(
    client: Client,
    before: Position | None,
    limit: int,
    keep: Callable[[dict[str, list[str]]], set[str]] | None = None,
) -> tuple[list[RecentProfile], Position | None]:
    """The next ``limit`` profiles below ``before``, newest activity first; and the next cursor.

    ``keep`` (optional) is given a round's candidate profiles (profile id -> its ids) and returns
    those to show (a filter on merged state, ``feedhouse.read.matching``). The cursor is the
    position of the last row *scanned*, so pages neither repeat nor skip; it is None when the
    table is exhausted.
    """
    superseded: list[Position] = []
    result = _walk(client, before, limit, keep, superseded)
    bury(client, superseded)
    return result


def _walk(
    client: Client,
    before: Position | None,
    limit: int,
    keep: Callable[[dict[str, list[str]]], set[str]] | None,
    superseded: list[Position],
) -> tuple[list[RecentProfile], Position | None]:
    """:func:`recent_profiles`' walk; the live rows it finds superseded go to ``superseded``."""
    found: list[RecentProfile] = []
    cursor = before
    rounds = 0
    while len(found) < limit:
        # Scan a little more than asked (stale rows of unmerged parts and a profile's other ids
        # cost candidates; a filter, more): every candidate costs a key lookup in three tables.
        # Where most rows are skipped (older ids of profiles listed higher up), each further
        # round scans twice as many, so a deep page takes a few rounds, not hundreds.
        needed = limit - len(found)
        scan = min(MAX_SCAN, (needed * 8 if keep else needed + needed // 2 + 8) << min(rounds, 8))
        rounds += 1
        scanned = rows(
            client,
            SCAN_SQL,
            first_page=1 if cursor is None else 0,
            before_ts=cursor[0] if cursor else MAX_MICROS,
            before_key=cursor[1] if cursor else "",
            limit=scan,
        )
        candidates = [(int(ts), str(key)) for ts, key in scanned]
        if not candidates:
            return found, None
        ids = members_of(client, list(dict.fromkeys(key for _, key in candidates)))
        owner = {identifier: profile for profile, members in ids.items() for identifier in members}
        seen = last_seen(client, list(owner))
        current = [(ts, key) for ts, key in candidates if seen.get(key) == ts]
        listed = sorted({owner.get(key, key) for _, key in current})
        wanted = keep({p: ids.get(p) or [p] for p in listed}) if keep and listed else set(listed)
        for ts, key in current:
            profile = owner.get(key, key)
            members = ids.get(profile) or [profile]
            if newest(members, seen) != (ts, key):
                # Another id of this profile is more recent: the profile is listed there, and
                # this row never will be (last-seen times only grow).
                superseded.append((ts, key))
                continue
            if profile not in wanted:
                continue
            found.append(RecentProfile(profile, ts, tuple(sorted(members)), (ts, key)))
            if len(found) == limit:
                return found, (ts, key)
        if len(candidates) < scan:
            return found, None
        cursor = candidates[-1]
    return found, cursor


# What this process has buried lately, per database: until parts merge, a buried row is still
# scanned, and each walk over it would bury it again. Databases where writing failed (a read-only
# user, say) are not tried again.
_buried: OrderedDict[tuple[str, int, str], None] = OrderedDict()
_refused: set[str] = set()
_lock = threading.Lock()
BURIED_REMEMBERED = 100_000


def bury(client: Client, superseded: Sequence[Position]) -> None:
    """Tombstone rows a walk found superseded, so later walks skip them in SQL once parts merge.
    Only work saved: when the write fails, the page is served all the same."""
    database = str(getattr(client, "database", "") or "")
    with _lock:
        if database in _refused:
            return
        fresh = [(ts, key) for ts, key in dict.fromkeys(superseded) if (database, ts, key) not in _buried]
    if not fresh:
        return
    try:
        client.command(
            TOMBSTONES_SQL, parameters={"keys": [key for _, key in fresh], "times": [ts for ts, _ in fresh]}
        )
    except Exception:
        log.warning("people list: tombstones not written, not trying again", exc_info=True)
        with _lock:
            _refused.add(database)
        return
    with _lock:
        for ts, key in fresh:
            _buried[(database, ts, key)] = None
        while len(_buried) > BURIED_REMEMBERED:
            _buried.popitem(last=False)


def newest(ids: Sequence[str], seen: dict[str, int]) -> Position | None:
    """The position of a profile's most recent id (ties: the larger id); None if none was seen."""
    return max(((seen[i], i) for i in ids if i in seen), default=None)


def last_seen(client: Client, ids: Sequence[str]) -> dict[str, int]:
    """id -> its newest event time (epoch µs), for those of ``ids`` that have events."""
    if not ids:
        return {}
    return {str(key): int(ts) for key, ts in rows(client, SEEN_SQL, ids=sorted(set(ids)))}
