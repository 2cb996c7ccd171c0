"""A write-back overlay on a Faust table, so a batch writes each touched key once."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feedhouse.streams.outputs import Outputs


_DELETED = object()  # a key removed in this batch


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
            value = self.dirty[key]
            return default if value is _DELETED else value
        return self.table.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self.dirty[key] = value

    def __delitem__(self, key: str) -> None:
        self.dirty[key] = _DELETED

    def flush(self) -> int:
        """Assign every written key to the table, delete removed ones (a changelog tombstone),
        within the current Faust event."""
        for key, value in self.dirty.items():
            if value is _DELETED:
                if key in self.table:
                    del self.table[key]
            else:
                self.table[key] = value
        count = len(self.dirty)
        self.dirty.clear()
        return count


# A table key no Segment id uses; its value is the version of the last sealed batch.
SEAL_KEY = "\x00feedhouse:sealed"


def seal_changelogs(outputs: Outputs, overlays: list[TableOverlay], version: int) -> None:
    """Make a batch's table writes durable, and recoverable even from a Tansu broker.

    Called after a batch's writes and before the batch is acknowledged (so before its offset
    can be committed). Tansu 0.6 reports a partition's end offset as the base offset of its
    last record batch plus one, so table recovery (which reads a changelog up to that offset)
    would miss the rest of the last batch. Each batch of table writes is therefore acknowledged,
    then followed by one small record sent on its own (the seal), which makes the reported end
    offset the true one. Apache Kafka reports end offsets correctly, so the agents seal only
    when ``FEEDHOUSE_CHANGELOG_SEALS`` is on (``feedhouse dev`` and the tests turn it on).
    """
    outputs.flush()  # the batch's writes leave in their own record batches...
    for overlay in overlays:
        overlay.table[SEAL_KEY] = version  # ...and the seal in one of its own
    outputs.flush()
