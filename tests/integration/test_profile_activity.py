"""A profile's activity summary and its events per day, read in one query on real ClickHouse:
one count per message at its newest receipt's time, the days limited to the chart's window."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client

from feedhouse.read.queries.profiles import activity, activity_with_days
from tests.support.offline_pipeline import OfflinePipeline

pytestmark = pytest.mark.integration


def micros(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1_000_000)


def day(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp())


def test_the_summary_and_the_days_of_a_profile_count_each_message_once(clickhouse: Client) -> None:
    pipeline = OfflinePipeline()

    def track(message: str, stamp: str, received: str | None = None) -> None:
        call = {"type": "track", "messageId": message, "userId": "eve", "event": "E", "timestamp": stamp}
        pipeline.add(call, received_at=micros(received) if received else None)

    track("old", "2026-01-01T09:00:00Z")  # more than 3 days before the newest: outside the window
    track("a", "2026-04-01T09:00:00Z")
    track("b", "2026-04-01T23:59:00Z")
    # Redelivered with another clock correction: the newer receipt's time (April 3) wins.
    track("c", "2026-04-02T10:00:00Z", received="2026-04-02T10:00:01Z")
    track("c", "2026-04-03T10:00:00Z", received="2026-04-03T10:00:05Z")
    pipeline.flush(clickhouse)

    summary, per_day = activity_with_days(clickhouse, ["eve"], 3)
    assert summary == activity(clickhouse, ["eve"]), "the summary is the activity query's"
    assert summary[0] == 4 and summary[2] == micros("2026-04-03T10:00:00Z"), summary
    assert per_day == {day("2026-04-01"): 2, day("2026-04-03"): 1}, per_day
    assert activity_with_days(clickhouse, ["nobody"], 3)[1] == {}
