"""Insert one table's rows of a batch: retry what may pass later, isolate rows that never will.

Two kinds of failure, told apart by :func:`is_row_error`:

- *row errors*: the data itself is refused (a value the column type cannot hold, a parse or
  constraint error). The same rows fail every time, so the rows are split in halves until the
  offending ones are alone; those go to the dead-letter topic, the rest is inserted.
- everything else (ClickHouse unreachable, table missing or read-only, too many parts, memory):
  retried with exponential backoff for as long as it takes. Nothing is committed meanwhile;
  the caller's ``wait`` keeps the Kafka consumer alive and says when to give up (stop asked,
  partitions revoked).

Every insert carries a deterministic ``insert_deduplication_token`` (batch token + row range),
so a retry of an insert that did land is dropped by ClickHouse instead of applied twice.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Sequence
from functools import partial

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from feedhouse import metrics
from feedhouse.clickhouse.tables import Row
from feedhouse.retry import Abandoned, Backoff, Wait, retry

__all__ = ["Abandoned", "Backoff", "RowError", "TableWriter", "is_row_error"]

log = logging.getLogger(__name__)

# ClickHouse error codes that mean "this data is refused", whatever the server's health.
ROW_ERROR_CODES = frozenset(
    {
        6,  # CANNOT_PARSE_TEXT
        26,  # CANNOT_PARSE_QUOTED_STRING
        27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
        38,  # CANNOT_PARSE_DATE
        41,  # CANNOT_PARSE_DATETIME
        53,  # TYPE_MISMATCH
        69,  # ARGUMENT_OUT_OF_BOUND
        70,  # CANNOT_CONVERT_TYPE
        72,  # CANNOT_PARSE_NUMBER
        117,  # INCORRECT_DATA
        131,  # TOO_LARGE_STRING_SIZE
        321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
        469,  # VIOLATED_CONSTRAINT
    }
)


STD_EXCEPTION = 1001


def is_row_error(exc: BaseException) -> bool:
    """True when ``exc`` blames the rows, so splitting the insert can isolate the bad ones."""
    if isinstance(exc, OperationalError):
        return False  # transport: connection refused, timeout, broken stream
    if isinstance(exc, DataError):
        return True  # clickhouse-connect could not serialise a value for its column type
    if isinstance(exc, DatabaseError):
        # Avro datums ClickHouse cannot read surface as its Avro library's exception (1001).
        return exc.code in ROW_ERROR_CODES or (exc.code == STD_EXCEPTION and "avro::Exception" in str(exc))
    # Raised by clickhouse-connect's column writers while building the Native block.
    return isinstance(exc, ValueError | TypeError | OverflowError | struct.error)


class RowError(Exception):
    """An insert ClickHouse refused because of the rows themselves (see :func:`is_row_error`)."""


class TableWriter:
    """Inserts rows into one table with column data (never SQL text), as described above."""

    def __init__(
        self,
        client: Client,
        database: str,
        table: str,
        columns: Sequence[str],
        settings: dict[str, object] | None = None,
        backoff: Backoff | None = None,
        container: Callable[[Sequence[bytes]], bytes] | None = None,
    ) -> None:
        """``container`` given, rows are Avro datums, inserted as one container per insert (the
        ``Avro`` format: ClickHouse decodes them); else rows are tuples in ``columns`` order."""
        self.container = container
        self.client = client
        self.database = database
        self.table = table
        self.columns = list(columns)
        self.settings = dict(settings or {})
        self.backoff = backoff or Backoff()
        self._types: list[str] | None = None

    def write(self, rows: Sequence[Row | bytes], token: str, wait: Wait) -> list[tuple[int, str]]:
        """Insert ``rows``; returns (index, error) of each row ClickHouse will never accept.

        Raises :class:`Abandoned` when ``wait`` refuses to wait any longer for a retry.
        """
        refused: list[tuple[int, str]] = []
        ranges = [(0, len(rows))] if rows else []
        while ranges:
            start, end = ranges.pop()
            try:
                retry(
                    partial(self._insert, rows[start:end], f"{token}:{start}-{end}"),
                    what=f"insert into {self.table}",
                    retry_on=self._outage,
                    wait=wait,
                    backoff=self.backoff,
                )
            except RowError as exc:
                metrics.SINK_INSERT_FAILURES.labels(self.table, "rows").inc()
                if end - start == 1:
                    refused.append((start, str(exc)))
                else:
                    middle = (start + end) // 2
                    ranges += [(middle, end), (start, middle)]  # left half first
        return refused

    def _outage(self, exc: BaseException) -> bool:
        """Retry everything but row errors (ClickHouse away, table missing, too many parts)."""
        if isinstance(exc, RowError):
            return False
        metrics.SINK_INSERT_FAILURES.labels(self.table, "retry").inc()
        return True

    def _insert(self, rows: Sequence[Row | bytes], token: str) -> None:
        started = time.perf_counter()
        try:
            self._send(rows, token)
        except Exception as exc:
            if is_row_error(exc):
                raise RowError(f"{type(exc).__name__}: {exc}") from exc
            raise
        metrics.SINK_INSERT_SECONDS.labels(self.table).observe(time.perf_counter() - started)
        metrics.SINK_ROWS_INSERTED.labels(self.table).inc(len(rows))

    def _send(self, rows: Sequence[Row | bytes], token: str) -> None:
        settings = {"insert_deduplication_token": token, **self.settings}
        if self._types is None:
            # Also in the Avro path: ClickHouse would skip a field the table lacks, silently.
            self._types = self._column_types()
        if self.container is not None:
            self.client.raw_insert(
                f"`{self.database}`.`{self.table}`",
                insert_block=self.container(rows),  # type: ignore[arg-type]
                fmt="Avro",
                settings=settings,
            )
            return
        self.client.insert(
            self.table,
            # Column-oriented: zip(*rows) pivots in C, several times faster than letting
            # clickhouse-connect pivot row tuples in Python.
            list(zip(*rows, strict=True)),
            column_names=self.columns,
            column_type_names=self._types,
            database=self.database,
            column_oriented=True,
            settings=settings,
        )

    def _column_types(self) -> list[str]:
        # One DESCRIBE per writer instead of one per insert (clickhouse-connect's default).
        result = self.client.query(f"DESCRIBE TABLE `{self.database}`.`{self.table}`")
        types = {row[0]: row[1] for row in result.result_rows}
        missing = [name for name in self.columns if name not in types]
        if missing:
            raise DatabaseError(f"{self.database}.{self.table} has no column {missing}: migrate first")
        return [types[name] for name in self.columns]
