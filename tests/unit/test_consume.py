"""Consumer batches: size and time bounds, commit offsets, deterministic dedup tokens."""

from __future__ import annotations

from confluent_kafka import Message

from feedhouse import settings as settings_module
from feedhouse.consume import Batch, BatchConsumer
from feedhouse.retry import Wait


def message(topic: str, partition: int, offset: int) -> Message:
    return Message(topic=topic, partition=partition, offset=offset, key=b"k", value=b"v")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batch(max_messages: int = 100, max_seconds: float = 1.0, clock: Clock | None = None) -> Batch[list[int]]:
    return Batch([], max_messages, max_seconds, clock or Clock())


def test_closes_at_max_messages() -> None:
    filling = batch(max_messages=3, max_seconds=60)
    assert not filling.due() and filling.remaining() == 60
    for offset in range(3):
        assert not filling.due()
        filling.track(message("ev", 0, offset))
    assert filling.due() and len(filling) == 3


def test_closes_after_max_seconds_once_it_holds_something() -> None:
    clock = Clock()
    filling = batch(max_messages=1000, max_seconds=0.5, clock=clock)
    clock.now += 10
    assert not filling.due(), "an empty batch is never due"
    assert filling.remaining() == 0.5
    filling.track(message("ev", 0, 0))
    clock.now += 0.4
    assert not filling.due() and abs(filling.remaining() - 0.1) < 1e-9
    clock.now += 0.1
    assert filling.due() and filling.remaining() == 0


def test_offsets_to_commit_are_one_past_the_last_per_partition() -> None:
    filling = batch()
    for topic, partition, offset in (("ev", 0, 10), ("ev", 0, 11), ("st", 2, 5)):
        filling.track(message(topic, partition, offset))
    rejected = message("ev", 1, 7)
    filling.track(rejected)
    filling.reject(rejected, "decode: garbage")  # dead letters are committed too
    committed = {(tp.topic, tp.partition): tp.offset for tp in filling.offsets()}
    assert committed == {("ev", 0): 12, ("ev", 1): 8, ("st", 2): 6}
    assert len(filling) == 4
    [letter] = filling.rejected
    assert (letter.topic, letter.partition, letter.offset, letter.error) == ("ev", 1, 7, "decode: garbage")
    assert letter.headers("sink")["feedhouse.source.offset"] == b"7"


def test_tokens_depend_on_name_and_offsets_only() -> None:
    def filled(offsets: list[int]) -> Batch[list[int]]:
        result = batch()
        for offset in offsets:
            result.track(message("ev", 0, offset))
        return result

    assert filled([1, 2, 3]).token("sink:events") == filled([1, 2, 3]).token("sink:events")
    assert filled([1, 2, 3]).token("sink:events") != filled([1, 2]).token("sink:events")
    assert filled([1, 2]).token("sink:events") != filled([1, 2]).token("sink:id_state")


class Nothing:
    """A stage that keeps nothing (the loop's pacing is under test, not a stage)."""

    def open(self) -> list[int]:
        return []

    def add(self, message: Message, batch: Batch[list[int]]) -> None:
        pass

    def write(self, batch: Batch[list[int]], wait: Wait) -> None:
        pass

    def discard(self) -> None:
        pass


def test_a_stage_can_pace_the_batches_that_follow() -> None:
    loop: BatchConsumer[list[int]] = BatchConsumer(
        settings_module.load({}),
        Nothing(),
        component="t",
        group_id="g",
        topics=["t"],
        max_messages=10,
        max_seconds=0.2,
    )
    assert loop._batch.max_seconds == 0.2
    loop.set_batch_seconds(1.5)  # the empty batch being gathered, and every later one
    assert loop._batch.max_seconds == 1.5 and loop._new_batch().max_seconds == 1.5
