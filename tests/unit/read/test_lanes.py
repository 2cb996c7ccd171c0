"""Side-by-side calls (read/lanes.py): concurrent on lane clients, in turn without lanes."""

from __future__ import annotations

import threading
from typing import Any

from feedhouse.read.lanes import Lanes


def test_calls_run_at_the_same_time_each_on_its_own_lane_and_answer_in_order() -> None:
    lanes = Lanes(lambda index: f"lane-{index}")  # type: ignore[arg-type,return-value]
    meeting = threading.Barrier(3, timeout=10)  # broken (an error) unless all three wait at once

    def call(client: Any, value: int) -> tuple[Any, int]:
        meeting.wait()
        return client, value

    results = lanes.side_by_side("shared", (call, (1,)), (call, (2,)), (call, (3,)))  # type: ignore[arg-type]
    assert results == [("lane-0", 1), ("lane-1", 2), ("lane-2", 3)], results


def test_without_lanes_the_calls_run_in_turn_on_the_given_client() -> None:
    order: list[int] = []

    def call(client: Any, value: int) -> tuple[Any, int]:
        order.append(value)
        return client, value

    results = Lanes().side_by_side("shared", (call, (1,)), (call, (2,)))  # type: ignore[arg-type]
    assert results == [("shared", 1), ("shared", 2)] and order == [1, 2]
