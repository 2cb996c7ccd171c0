"""The suppression list: ids whose new events every gateway process drops (answering 200).

Kept in the compacted topic ``suppressions`` (key the id, value ``{"regulation": ID, "at":
micros}``; a tombstone lifts it), followed by every gateway process (``feedhouse.compacted``),
so every worker and every restart sees the same list. Checking is two set lookups per event
(for a batch, two ``isdisjoint`` calls: ``gateway/ingest.py``).
Each process keeps the ids only, not the topic's values: those were about 300 bytes an id.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from feedhouse import metrics
from feedhouse.compacted import TopicTable
from feedhouse.settings import Settings

TOPIC = "suppressions"


class SuppressionList:
    """The current suppression list of this process, followed from the topic."""

    def __init__(self, settings: Settings) -> None:
        self.ids: frozenset[str] = frozenset()
        self.table = TopicTable(settings, TOPIC, on_change=self._changed, keys_only=True)

    def _changed(self, values: dict[str, Any]) -> None:
        self.ids = frozenset(values)
        metrics.SUPPRESSED_IDS.set(len(self.ids))

    def suppressed(self, user_id: str | None, anonymous_id: str | None) -> bool:
        ids = self.ids
        if not ids:
            return False
        return (user_id is not None and user_id in ids) or (anonymous_id is not None and anonymous_id in ids)

    def start(self) -> SuppressionList:
        self.table.start()
        return self

    def stop(self) -> None:
        self.table.stop()

    def health(self) -> tuple[bool, str]:
        ok, _ = self.table.health()
        return (True, f"{len(self.ids)} ids suppressed") if ok else (False, "suppression list not loaded yet")

    def suppress(self, ids: Iterable[str], regulation: str) -> None:
        at = time.time_ns() // 1000
        self.table.put_many({identifier: {"regulation": regulation, "at": at} for identifier in ids})

    def lift(self, ids: Iterable[str]) -> None:
        self.table.put_many(dict.fromkeys(ids))
