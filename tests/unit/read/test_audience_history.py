"""An audience's daily sizes from its entry and exit days."""

from __future__ import annotations

from feedhouse.read.queries.audience_history import daily_sizes

DAY = 86400


def test_sizes_are_the_running_sum_of_changes_including_those_before_the_window() -> None:
    changes = [(0, 3), (5 * DAY, 2), (6 * DAY, -1), (9 * DAY, -4)]
    assert daily_sizes(changes, 5 * DAY, 8 * DAY) == [(5 * DAY, 5), (6 * DAY, 4), (7 * DAY, 4), (8 * DAY, 4)]
    assert daily_sizes(changes, 9 * DAY, 9 * DAY) == [(9 * DAY, 0)]
    assert daily_sizes([], 0, DAY) == [(0, 0), (DAY, 0)]
