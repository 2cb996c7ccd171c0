"""The regulations and their state, in the compacted topic ``regulations`` (one record per
regulation, its newest state), followed by every server process: any of them can accept a
request or answer about one, and the executor picks up what is new."""

from __future__ import annotations

from feedhouse.compacted import TopicTable
from feedhouse.privacy.regulations import Regulation
from feedhouse.settings import Settings

TOPIC = "regulations"


class RegulationLog:
    def __init__(self, settings: Settings) -> None:
        self.table = TopicTable(settings, TOPIC)

    def start(self) -> RegulationLog:
        self.table.start()
        return self

    def stop(self) -> None:
        self.table.stop()

    def health(self) -> tuple[bool, str]:
        return self.table.health()

    def save(self, regulation: Regulation) -> None:
        """Write ``regulation``'s current state (acknowledged and read back before returning)."""
        self.table.put(regulation.id, regulation.to_json())

    def get(self, regulation_id: str) -> Regulation | None:
        value = self.table.values.get(regulation_id)
        return Regulation.from_json(value) if value is not None else None

    def all(self) -> list[Regulation]:
        """Every regulation, newest first."""
        found = [Regulation.from_json(value) for value in self.table.values.values()]
        return sorted(found, key=lambda r: (r.created_at, r.id), reverse=True)
