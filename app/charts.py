"""Small server-rendered SVG bar charts: geometry only, the template draws the rects.

Pure functions, so a chart is tested without a browser; no script draws anything, so charts
work under the strict Content-Security-Policy and without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

WIDTH = 720
HEIGHT = 80
DAY = 86400


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # shown as the bar's <title> (tooltip and accessible name)


@dataclass(frozen=True, slots=True)
class Chart:
    bars: tuple[Bar, ...]
    width: int
    height: int
    first: str
    last: str
    peak: int
    total: int
    summary: str  # the chart in words, for screen readers


def day_label(day: int) -> str:
    return datetime.fromtimestamp(day, UTC).strftime("%Y-%m-%d")


def day_range(last_day: int, days: int) -> tuple[int, int]:
    """(first, last) epoch seconds of the ``days`` UTC days ending with the day of ``last_day``."""
    last = last_day - last_day % DAY
    return last - (days - 1) * DAY, last


def bar_chart(values: list[tuple[int, int]], unit: str, width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """One bar per (day, value), oldest first, scaled to the largest value."""
    peak = max((value for _, value in values), default=0)
    slot = width / max(len(values), 1)
    bars = []
    for index, (day, value) in enumerate(values):
        tall = 0.0 if peak == 0 else max(1.0, (height - 2) * value / peak) if value else 0.0
        bars.append(
            Bar(
                x=round(index * slot + slot * 0.1, 2),
                y=round(height - tall, 2),
                width=round(max(slot * 0.8, 0.5), 2),
                height=round(tall, 2),
                label=f"{day_label(day)}: {value} {unit}",
            )
        )
    total = sum(value for _, value in values)
    first = day_label(values[0][0]) if values else ""
    last = day_label(values[-1][0]) if values else ""
    summary = f"{len(values)} days from {first} to {last}; peak {peak} {unit}" if values else "no data"
    return Chart(tuple(bars), width, height, first, last, peak, total, summary)


def activity_chart(per_day: dict[int, int], last_day: int, days: int = 90) -> Chart:
    """Events per day over the ``days`` days ending on ``last_day`` (epoch seconds)."""
    first, last = day_range(last_day, days)
    return bar_chart([(day, per_day.get(day, 0)) for day in range(first, last + 1, DAY)], "events")
