"""Side by side: a request's independent queries, each on a ClickHouse client of its own lane.

Calls through one clickhouse-connect client are serialised; chDB (and a server) runs calls on
different clients in parallel. A request that needs several answers that do not depend on each
other (a profile's activity, its ids' states, Feedhouse's values; the person page's timeline and
chart) asks for them at once and waits for the slowest instead of their sum.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clickhouse_connect.driver.client import Client

# Extra clients, by lane number (0, 1, ...): ``get_client(settings, f"app-{lane}")`` in the server.
LaneFactory = Callable[[int], Client]
Call = tuple[Callable[..., Any], tuple[Any, ...]]  # a query function (given a client first), its arguments
WIDTH = 5  # the most calls a request makes side by side (the person page's)


class Lanes:
    """A pool of threads and the lane clients they query with; without lanes, one after another."""

    def __init__(self, lanes: LaneFactory | None = None, width: int = WIDTH) -> None:
        self.lanes = lanes
        self.pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="read-lane") if lanes else None

    def side_by_side(self, client: Client, *calls: Call) -> list[Any]:
        """The results of ``calls``, run concurrently on lanes 0, 1, ...; on ``client`` in turn
        when there are no lanes. Call it from a worker thread, never from a lane's own call."""
        if self.pool is None or self.lanes is None:
            return [function(client, *args) for function, args in calls]
        lanes = self.lanes
        futures = [
            self.pool.submit(function, lanes(index), *args) for index, (function, args) in enumerate(calls)
        ]
        return [future.result() for future in futures]
