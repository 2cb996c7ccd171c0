"""Deleted ids, and the rule that keeps a deleted person from coming back.

The compacted topic ``deletions`` holds one record per id of every deleted person: ``{"regulation",
"at" (epoch µs), "forever"}``. Every consumer that could bring the person back follows it
(``feedhouse.compacted``): the identity router (a replayed events topic would rebuild their
identity) and the sink (a replayed or re-sunk topic would re-insert their events and state).

* ``forever`` (``SUPPRESS_WITH_DELETE``): nothing with the id is ever written again.
* otherwise (``DELETE_ONLY``): what happened before the deletion is dropped — a replay, a
  duplicate of an old event, a late event whose timestamp is before the deletion — and
  genuinely new events (timestamp and receipt after it) start a new profile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from feedhouse.compacted import TopicTable
from feedhouse.settings import Settings

TOPIC = "deletions"


def dropped(entry: Mapping[str, Any] | None, timestamp: int | None, received_at: int | None) -> bool:
    """Whether a record of a deleted id, with these times (µs), must not be written."""
    if entry is None:
        return False
    if entry.get("forever"):
        return True
    at = int(entry.get("at") or 0)
    # No time (an identity state record): it was derived from what was deleted.
    if timestamp is None:
        return True
    return timestamp <= at or (received_at is not None and received_at <= at)


class DeletedIds:
    """This process's view of the deleted ids (followed from the topic)."""

    def __init__(self, settings: Settings, on_change: Callable[[], None] | None = None) -> None:
        self.table = TopicTable(
            settings, TOPIC, on_change=(lambda _values: on_change()) if on_change else None
        )

    def start(self) -> DeletedIds:
        self.table.start()
        return self

    def stop(self) -> None:
        self.table.stop()

    def wait_loaded(self, timeout: float) -> bool:
        return self.table.wait_loaded(timeout)

    def entry(self, identifier: str | None) -> Mapping[str, Any] | None:
        if not identifier:
            return None
        values = self.table.values
        return values.get(identifier) if values else None

    def drops_event(self, ids: Iterable[str | None], timestamp: int | None, received_at: int | None) -> bool:
        values = self.table.values
        if not values:
            return False
        return any(dropped(values.get(i) if i else None, timestamp, received_at) for i in ids)

    def record(self, ids: Iterable[str], regulation: str, at: int, forever: bool) -> None:
        """Mark ``ids`` deleted (acknowledged by Kafka and read back here before returning)."""
        self.table.put_many({i: {"regulation": regulation, "at": at, "forever": forever} for i in ids})


def run_once_loaded(
    deleted: DeletedIds, stop: threading.Event, run: Callable[[threading.Event], None]
) -> None:
    """Follow ``deleted`` and call ``run(stop)`` once every deleted id is known (a consumer that
    started earlier could write a replayed record of a deleted person), until ``stop``."""
    deleted.start()
    try:
        while not deleted.wait_loaded(1.0):
            if stop.is_set():
                return
        run(stop)
    finally:
        deleted.stop()
