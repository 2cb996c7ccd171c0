"""Sink batches: size and time bounds, commit offsets, deterministic dedup tokens."""

from __future__ import annotations

import time

from confluent_kafka import Message

from feedhouse.sink.batch import Batch


def message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=b"k", value=b"v")


def test_closes_at_max_rows() -> None:
    batch = Batch(max_rows=3, max_seconds=60)
    assert not batch.due() and batch.remaining() == 60
    for offset in range(3):
        assert not batch.due()
        batch.add("events", (offset,), message("ev", 0, offset))
    assert batch.due() and len(batch) == 3


def test_closes_after_max_seconds_once_it_holds_something() -> None:
    batch = Batch(max_rows=1000, max_seconds=0.05)
    assert not batch.due()  # an empty batch is never due
    batch.add("events", (1,), message("ev", 0, 0))
    deadline = time.monotonic() + 5
    while not batch.due():
        assert time.monotonic() < deadline
    assert batch.remaining() == 0


def test_offsets_to_commit_are_one_past_the_last_per_partition() -> None:
    batch = Batch(max_rows=100, max_seconds=1)
    batch.add("events", (1,), message("ev", 0, 10))
    batch.add("events", (2,), message("ev", 0, 11))
    batch.add("id_state", (3,), message("st", 2, 5))
    batch.reject(message("ev", 1, 7), "decode: garbage")  # dead letters are committed too
    committed = {(tp.topic, tp.partition): tp.offset for tp in batch.offsets()}
    assert committed == {("ev", 0): 12, ("ev", 1): 8, ("st", 2): 6}
    assert len(batch) == 4
    assert [len(rows.rows) for rows in batch.tables.values()] == [2, 1]
    assert batch.tables["events"].sources[1].offset() == 11


def test_tokens_depend_on_table_and_offsets_only() -> None:
    def filled(offsets: list[int]) -> Batch:
        batch = Batch(max_rows=100, max_seconds=1)
        for offset in offsets:
            batch.add("events", (offset,), message("ev", 0, offset))
        return batch

    assert filled([1, 2, 3]).token("events") == filled([1, 2, 3]).token("events")
    assert filled([1, 2, 3]).token("events") != filled([1, 2]).token("events")
    assert filled([1, 2]).token("events") != filled([1, 2]).token("id_state")
