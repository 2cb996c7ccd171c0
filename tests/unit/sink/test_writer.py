"""The insert policy: which failures are the rows' fault, bisection, retries and backoff.

A recording stand-in for the client: the real-ClickHouse behaviour of the same code is in
tests/integration/test_sink_writer.py.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from feedhouse.clickhouse.tables import Row
from feedhouse.sink.writer import Abandoned, Backoff, TableWriter, is_row_error


@pytest.mark.parametrize(
    ("exc", "row_level"),
    [
        (DataError("Invalid None value in non-Nullable column"), True),
        (ValueError("invalid literal for int()"), True),
        (TypeError("bad"), True),
        (struct.error("argument out of range"), True),
        (DatabaseError("Constraint violated", code=469), True),
        (DatabaseError("Cannot parse", code=6), True),
        (DatabaseError("Table does not exist", code=60), False),  # UNKNOWN_TABLE: deploy/outage
        (DatabaseError("Too many parts", code=252), False),
        (DatabaseError("Memory limit", code=241), False),
        (DatabaseError("no code"), False),
        (DatabaseError("std::exception. type: avro::Exception, negative length", code=1001), True),
        (DatabaseError("std::exception. type: std::bad_alloc", code=1001), False),
        (OperationalError("connection refused"), False),
        (RuntimeError("anything else"), False),
    ],
)
def test_row_errors_are_told_apart_from_outages(exc: BaseException, row_level: bool) -> None:
    assert is_row_error(exc) is row_level


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


class RecordingClient:
    """Accepts inserts unless a row's first value is in ``poison`` or the outage counter runs."""

    def __init__(self, poison: set[Any] = frozenset(), outages: int = 0) -> None:  # type: ignore[assignment]
        self.poison = poison
        self.outages = outages
        self.inserted: list[Any] = []
        self.tokens: list[str] = []

    def query(self, _sql: str) -> Any:
        class Result:
            result_rows = [("id", "String"), ("n", "Int64")]

        return Result()

    def insert(self, _table: str, columns: Sequence[Sequence[Any]], **kwargs: Any) -> None:
        if self.outages:
            self.outages -= 1
            raise OperationalError("connection refused")
        if self.poison & set(columns[0]):
            raise DatabaseError("Constraint violated", code=469)
        self.inserted.extend(columns[0])
        self.tokens.append(kwargs["settings"]["insert_deduplication_token"])


def writer(client: RecordingClient) -> TableWriter:
    return TableWriter(client, "db", "t", ["id", "n"], backoff=Backoff(initial=0.01))  # type: ignore[arg-type]


def rows(n: int) -> list[Row]:
    return [(f"r{i}", i) for i in range(n)]


def test_bisection_isolates_the_refused_rows_and_inserts_the_rest() -> None:
    client = RecordingClient(poison={"r3", "r12"})
    refused = writer(client).write(rows(16), "tok", lambda _s: pytest.fail("no retry expected"))
    assert [index for index, _ in refused] == [3, 12]
    assert "Constraint violated" in refused[0][1]
    assert sorted(client.inserted, key=lambda r: int(r[1:])) == [
        f"r{i}" for i in range(16) if i not in (3, 12)
    ]
    # Every sub-insert has its own deterministic token.
    assert len(set(client.tokens)) == len(client.tokens) and all(t.startswith("tok:") for t in client.tokens)


def test_outage_is_retried_until_it_passes_and_nothing_is_refused() -> None:
    client = RecordingClient(outages=3)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return True

    refused = writer(client).write(rows(4), "tok", wait)
    assert refused == [] and client.inserted == ["r0", "r1", "r2", "r3"]
    assert waits == [0.01, 0.02, 0.04]
    assert client.tokens == ["tok:0-4"]  # the retry reuses the token of the failed attempt


def test_outage_gives_up_when_wait_says_so() -> None:
    client = RecordingClient(outages=100)
    with pytest.raises(Abandoned):
        writer(client).write(rows(4), "tok", lambda _s: False)
    assert client.inserted == []


def test_nothing_to_write() -> None:
    client = RecordingClient()
    assert writer(client).write([], "tok", lambda _s: True) == []
    assert client.tokens == []
