"""A sink batch: rows per table plus the Kafka offsets they came from; closes by size or age."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from confluent_kafka import Message, TopicPartition

from feedhouse.clickhouse.tables import Row


@dataclass(slots=True)
class TableRows:
    """The rows of one table in a batch, each with the message it came from (for dead letters)."""

    rows: list[Row] = field(default_factory=list)
    sources: list[Message] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the sink can never write: it goes to the dead-letter topic."""

    message: Message
    error: str


class Batch:
    """Rows accumulated since the last commit. Full at ``max_rows`` messages or ``max_seconds`` of age."""

    def __init__(self, max_rows: int, max_seconds: float) -> None:
        self.max_rows = max_rows
        self.max_seconds = max_seconds
        self.tables: dict[str, TableRows] = {}
        self.rejected: list[Rejected] = []
        self.messages = 0
        # (topic, partition) -> (first offset, last offset) seen in this batch.
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}
        self.opened_at: float | None = None

    def __len__(self) -> int:
        return self.messages

    def _track(self, message: Message) -> None:
        if self.opened_at is None:
            self.opened_at = time.monotonic()
        self.messages += 1
        key = (message.topic() or "", message.partition() or 0)
        offset = message.offset() or 0
        first, _ = self.ranges.get(key, (offset, offset))
        self.ranges[key] = (first, offset)

    def add(self, table: str, row: Row, message: Message) -> None:
        self._track(message)
        rows = self.tables.get(table)
        if rows is None:
            rows = self.tables[table] = TableRows()
        rows.rows.append(row)
        rows.sources.append(message)

    def reject(self, message: Message, error: str) -> None:
        self._track(message)
        self.rejected.append(Rejected(message, error))

    def remaining(self) -> float:
        """Seconds until the batch is due; ``max_seconds`` while it is empty."""
        if self.opened_at is None:
            return self.max_seconds
        return max(0.0, self.opened_at + self.max_seconds - time.monotonic())

    def due(self) -> bool:
        return self.messages >= self.max_rows or (self.messages > 0 and self.remaining() <= 0)

    def offsets(self) -> list[TopicPartition]:
        """What to commit once the batch is written: the offset after the last one, per partition."""
        return [
            TopicPartition(topic, partition, last + 1)
            for (topic, partition), (_, last) in sorted(self.ranges.items())
        ]

    def token(self, table: str) -> str:
        """A deterministic insert_deduplication_token for ``table``'s rows of this batch.

        Derived from the offsets, so the same batch retried (same rows, same order) carries the
        same token and ClickHouse drops the repeat instead of applying it twice.
        """
        span = ",".join(f"{t}/{p}/{first}-{last}" for (t, p), (first, last) in sorted(self.ranges.items()))
        return f"sink:{table}:{hashlib.sha256(span.encode()).hexdigest()[:32]}"
