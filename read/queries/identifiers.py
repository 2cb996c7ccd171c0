"""When a profile's ids and the profile itself were first and last seen (Segment's Profile API).

Both read the small columns of the profile's events by primary key (``events``, ordered by
(person_key, message_id)). Copies of one message share its ids and message id, so first / last
times need no deduplication beyond what a redelivery with another timestamp can shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from feedhouse.read.sql import one, rows

# Per id as a userId / an anonymousId of the profile's events: its first event.
ID_FIRST_SEEN_SQL = """
SELECT 'user_id', user_id, toUnixTimestamp64Micro(min(timestamp)), argMin(message_id, timestamp),
       argMin(source_id, timestamp)
FROM events
WHERE person_key IN {ids:Array(String)} AND user_id IN {ids:Array(String)}
GROUP BY user_id
UNION ALL
SELECT 'anonymous_id', anonymous_id, toUnixTimestamp64Micro(min(timestamp)), argMin(message_id, timestamp),
       argMin(source_id, timestamp)
FROM events
WHERE person_key IN {ids:Array(String)} AND anonymous_id IN {ids:Array(String)}
GROUP BY anonymous_id
"""

METADATA_SQL = """
SELECT
    count(),
    toUnixTimestamp64Micro(min(timestamp)), argMin(message_id, timestamp), argMin(source_id, timestamp),
    toUnixTimestamp64Micro(max(timestamp)), argMax(message_id, timestamp), argMax(source_id, timestamp)
FROM events
WHERE person_key IN {ids:Array(String)}
"""


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """The first event that carried an id, as a given kind of id."""

    time: int
    message_id: str
    source_id: str


def first_seen(client: Client, ids: Sequence[str]) -> dict[tuple[str, str], FirstSeen]:
    """(kind, id) -> its first event, kind ``user_id`` or ``anonymous_id``."""
    if not ids:
        return {}
    found = rows(client, ID_FIRST_SEEN_SQL, ids=list(ids))
    return {
        (str(kind), str(identifier)): FirstSeen(int(time), str(message), str(source))
        for kind, identifier, time, message, source in found
    }


@dataclass(frozen=True, slots=True)
class Metadata:
    """The profile's first and last events (None when it has none)."""

    first: FirstSeen | None
    last: FirstSeen | None


def metadata(client: Client, ids: Sequence[str]) -> Metadata:
    count, first, first_id, first_source, last, last_id, last_source = one(
        client, METADATA_SQL, ids=list(ids)
    )
    if not count:
        return Metadata(None, None)
    return Metadata(
        FirstSeen(int(first), str(first_id), str(first_source)),
        FirstSeen(int(last), str(last_id), str(last_source)),
    )
