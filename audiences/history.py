"""The change log (``computed_changes``): where every change is written, with its sequence number.

One writer (the evaluator) numbers changes densely (1, 2, 3, ...) in the order it decides them,
so a sender reads "everything after my cursor" in order, per profile and definition, and its
lag is a subtraction. The numbering resumes from the table after a restart. An insert is
retried with the same rows and deduplication token, so a retried insert that had landed is
dropped by ClickHouse; if the writer gives up, it forgets its counter and reads it back before
the next write (the changes it wrote, if any, are then "current" and are not decided again).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from feedhouse import metrics
from feedhouse.audiences.changes import Change
from feedhouse.audiences.queries import MAX_SEQ_SQL
from feedhouse.read.sql import one
from feedhouse.retry import Backoff, Wait, retry

log = logging.getLogger(__name__)

COLUMNS = (
    "seq",
    "kind",
    "definition_key",
    "computation_id",
    "profile_id",
    "user_id",
    "anonymous_id",
    "member",
    "value",
    "previous",
    "change_index",
    "entered_at",
    "exited_at",
    "cause",
    "changed_at",
    "message_id",
)
INSERT_ROWS = 50_000


class ChangeLog:
    """Appends changes to ``computed_changes`` (the only writer of that table)."""

    def __init__(self, client: Client, backoff: Backoff | None = None) -> None:
        self.client = client
        self.backoff = backoff or Backoff()
        self._next: int | None = None

    def reset(self) -> None:
        """Forget the counter (a write may or may not have landed): read it back before the next."""
        self._next = None

    def next_seq(self) -> int:
        if self._next is None:
            self._next = int(one(self.client, MAX_SEQ_SQL)[0] or 0) + 1
        return self._next

    def write(self, changes: Sequence[Change], wait: Wait) -> None:
        """Write ``changes`` in order, numbered from :meth:`next_seq`; retried through ``wait``."""
        if not changes:
            return
        first = self.next_seq()
        try:
            for start in range(0, len(changes), INSERT_ROWS):
                part = changes[start : start + INSERT_ROWS]
                self._insert(first + start, part, wait)
        except BaseException:
            self.reset()
            raise
        self._next = first + len(changes)
        counted = Counter((change.kind, change.cause) for change in changes)
        for (kind, cause), count in counted.items():
            metrics.child(metrics.AUDIENCE_CHANGES, kind, cause).inc(count)

    def _insert(self, first: int, changes: Sequence[Change], wait: Wait) -> None:
        data = [
            (
                first + offset,
                c.kind,
                c.definition_key,
                c.computation_id,
                c.profile_id,
                c.user_id,
                c.anonymous_id,
                int(c.member),
                c.value,
                c.previous,
                c.change_index,
                c.entered_at,
                c.exited_at,
                c.cause,
                c.changed_at,
                c.message_id,
            )
            for offset, c in enumerate(changes)
        ]
        token = f"audiences:{first}-{first + len(changes) - 1}"

        def insert() -> None:
            self.client.insert(
                "computed_changes",
                data,
                column_names=list(COLUMNS),
                settings={"insert_deduplication_token": token},
            )

        retry(
            insert,
            what="computed changes insert",
            retry_on=lambda exc: isinstance(exc, ClickHouseError | OSError),
            wait=wait,
            backoff=self.backoff,
        )
