"""A write-back overlay on a Faust table, so a batch writes each touched key once."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import faust


class TableOverlay:
    """Reads through to ``table``; writes stay here until :meth:`flush` assigns them.

    Every write to a Faust table is one changelog record; commands of one batch often touch
    the same key, and only its final value needs to reach the changelog.
    """

    def __init__(self, table: MutableMapping[str, Any]) -> None:
        self.table = table
        self.dirty: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.dirty:
            return self.dirty[key]
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.dirty[key] = value

    def flush(self) -> int:
        """Assign every written key to the table (within the current Faust event)."""
        for key, value in self.dirty.items():
            self.table[key] = value
        count = len(self.dirty)
        self.dirty.clear()
        return count


# A table key no Segment id uses; its value is the version of the last sealed batch.
SEAL_KEY = "\x00feedhouse:sealed"


async def seal_changelogs(app: faust.App, overlays: list[TableOverlay], version: int) -> None:
    """Make a batch's table writes durable, and recoverable even from a Tansu broker.

    Two gaps are closed here, before the batch is acknowledged (and so before its offset can
    be committed):

    * Faust's commit flushes its producer buffer only until no record leaves it for 0.1 s, so
      under load it can commit source offsets while changelog records still wait in the
      buffer. We drain the buffer and flush the Kafka client ourselves.
    * Tansu 0.6 reports a partition's end offset as the base offset of its last record batch
      plus one, so table recovery (which reads a changelog up to that offset) misses the rest
      of the last batch. Each batch of table writes is therefore followed by one small record
      sent on its own (the seal), which makes the reported end offset the true one. On Apache
      Kafka the seal is merely redundant.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()
    await app.producer.flush()
    for overlay in overlays:
        overlay.table[SEAL_KEY] = version
        while buffer.size:
            await buffer.flush()
        await app.producer.flush()
