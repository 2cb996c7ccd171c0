"""Fakes for pure unit tests of the HTTP layer (integration tests use the real broker)."""

from __future__ import annotations

from collections.abc import Sequence

from feedhouse.gateway.publisher import KafkaUnavailable, Record


class RecordingPublisher:
    """Stands in for :class:`gateway.publisher.Publisher`: keeps what would have been produced."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.down = False

    async def publish(self, records: Sequence[Record]) -> None:
        if self.down:
            raise KafkaUnavailable("broker down (fake)")
        self.records.extend(records)

    def reachable(self, timeout: float = 1.0) -> bool:
        return not self.down

    def close(self, timeout: float = 5.0) -> None:
        pass
