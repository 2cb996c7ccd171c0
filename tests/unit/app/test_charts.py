"""Server-rendered charts: geometry from values."""

from __future__ import annotations

from feedhouse.app.charts import DAY, activity_chart, bar_chart, day_range


def test_bars_scale_to_the_peak_and_say_what_they_show() -> None:
    chart = bar_chart([(0, 1), (DAY, 4), (2 * DAY, 0)], "events", width=300, height=42)
    first, peak, empty = chart.bars
    assert peak.height == 40 and peak.y == 2 and empty.height == 0
    assert first.height == 10 and first.x < peak.x < empty.x
    assert peak.label == "1970-01-02: 4 events"
    assert (chart.peak, chart.total, chart.first, chart.last) == (4, 5, "1970-01-01", "1970-01-03")
    assert chart.summary == "3 days from 1970-01-01 to 1970-01-03; peak 4 events"


def test_a_small_value_stays_visible_and_no_data_is_flat() -> None:
    chart = bar_chart([(0, 1), (DAY, 1000)], "events", height=80)
    assert chart.bars[0].height >= 1
    assert all(bar.height == 0 for bar in bar_chart([(0, 0), (DAY, 0)], "x").bars)
    assert bar_chart([], "x").summary == "no data"


def test_activity_covers_the_days_ending_on_the_last_one() -> None:
    last = 100 * DAY + 3600
    first_day, last_day = day_range(last, 90)
    assert (last_day, first_day) == (100 * DAY, 11 * DAY)
    chart = activity_chart({100 * DAY: 3, 50 * DAY: 1}, last, 90)
    assert len(chart.bars) == 90 and chart.peak == 3 and chart.total == 4
