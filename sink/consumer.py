"""The sink loop: consume Feedhouse's output topics, batch, insert into ClickHouse, then commit.

At-least-once: offsets are committed (synchronously) only after every row of the batch is in
ClickHouse or on the dead-letter topic. A crash between insert and commit replays the batch;
the tables are ReplacingMergeTrees read with FINAL/argMax, so a replayed row never shows twice.

While ClickHouse refuses inserts the loop neither commits nor consumes: it pauses its partitions
and keeps polling (so the group keeps it and rebalances are served) until the insert passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from feedhouse import metrics
from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.kafka import consumer_config, record_consumer_lag
from feedhouse.settings import Settings
from feedhouse.sink.batch import Batch, Rejected
from feedhouse.sink.dead_letters import DeadLetterError, DeadLetterOutbox
from feedhouse.sink.routes import Route, routes
from feedhouse.sink.writer import Abandoned, Backoff, TableWriter

GROUP_SUFFIX = "sink"  # group id: <topic prefix>sink, so two installs on one cluster never share it
POLL_SECONDS = 0.5  # longest a stop request waits for the loop to notice it
LAG_EVERY_SECONDS = 2.0
# Event timestamps come from clients: one batch can span many months (a historical import),
# which ClickHouse refuses by default past 100 partitions per insert.
TABLE_SETTINGS: dict[str, dict[str, object]] = {
    "events": {"max_partitions_per_insert_block": 0},
    "rejected_events": {"max_partitions_per_insert_block": 0},
}

log = logging.getLogger(__name__)


class Sink:
    """Kafka -> ClickHouse for every table Feedhouse keeps. Run it with :meth:`run`.

    Standalone (``feedhouse sink``) or as a thread of another process: chDB allows one process
    per data directory, so in embedded mode the gateway hosts the sink. ``client`` defaults to
    the process's ``purpose="sink"`` client, a handle of its own so that inserts never queue
    behind read-API queries.
    """

    def __init__(
        self,
        settings: Settings,
        client: Client | None = None,
        *,
        group_id: str | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id or f"{settings.topic_prefix}{GROUP_SUFFIX}"
        self.client = client if client is not None else get_client(settings, purpose="sink")
        self.database = database_for(settings)
        self.routes: dict[str, Route] = routes(settings)
        self.backoff = backoff or Backoff()
        self.writers = {
            route.table.name: TableWriter(
                self.client,
                self.database,
                route.table.name,
                route.table.column_names,
                settings=TABLE_SETTINGS.get(route.table.name),
                backoff=self.backoff,
            )
            for route in self.routes.values()
        }
        self.dead_letters = DeadLetterOutbox(settings)
        self.assigned = threading.Event()  # set once the group gave this sink its partitions
        self._batch = self._new_batch()
        self._carry: list[Message] = []  # consumed while waiting for a retry; next batch's
        self._paused: list[TopicPartition] = []
        self._flushing = False
        self._generation = 0  # bumped when partitions are revoked: a flush in progress gives up
        self._stop = threading.Event()
        self._lag_at = 0.0

    def _new_batch(self) -> Batch:
        return Batch(self.settings.sink_batch_rows, self.settings.sink_batch_seconds)

    # ---- main loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then write and commit what was consumed, and return."""
        self._stop = stop
        consumer = Consumer(consumer_config(self.settings, self.group_id))
        consumer.subscribe(
            sorted(self.routes),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("sink started", extra={"group": self.group_id, "topics": sorted(self.routes)})
        try:
            while not stop.is_set():
                self._poll(consumer)
                if self._batch.due():
                    self._flush(consumer)
                self._report_lag(consumer)
            self._await_assignment(consumer)
            if len(self._batch):
                self._flush(consumer)  # one attempt: wait() refuses once stop is set
        finally:
            consumer.close()
            self.dead_letters.close()
            log.info("sink stopped", extra={"group": self.group_id})

    def _await_assignment(self, consumer: Consumer) -> None:
        # Tansu wedges a group for good when a member leaves while the group is still joining:
        # a sink stopped right after it started first waits (bounded) for its assignment.
        deadline = time.monotonic() + self.settings.kafka_session_timeout_ms / 1000
        while not self.assigned.is_set() and time.monotonic() < deadline:
            self._poll(consumer)

    def _poll(self, consumer: Consumer) -> None:
        if self._carry:
            messages, self._carry = self._carry, []
        else:
            room = max(1, self._batch.max_rows - len(self._batch))
            messages = consumer.consume(min(room, 10_000), min(self._batch.remaining(), POLL_SECONDS))
        for message in messages:
            self._add(message)

    def _add(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaException(error)
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error", extra={"error": str(error)})
            return
        route = self.routes.get(message.topic() or "")
        if route is None:
            return
        try:
            record = route.codec.decode(message.value() or b"")
        except Exception as exc:  # AvroDecodeError, and anything a corrupt body provokes
            self._batch.reject(message, f"decode: {exc}")
            return
        try:
            row = route.process(record)
        except Exception as exc:  # a record that decodes but cannot become a row
            self._batch.reject(message, f"process: {type(exc).__name__}: {exc}")
            return
        self._batch.add(route.table.name, row, message)

    # ---- writing a batch -----------------------------------------------------------------

    def _flush(self, consumer: Consumer, *, can_wait: bool = True) -> None:
        batch, self._batch = self._batch, self._new_batch()
        if not len(batch):
            return
        generation = self._generation
        self._flushing = True
        started = time.perf_counter()

        def wait(seconds: float) -> bool:
            return can_wait and self._wait(consumer, seconds, generation)

        try:
            for table, rows in batch.tables.items():
                refused = self.writers[table].write(rows.rows, batch.token(table), wait)
                for index, error in refused:
                    batch.rejected.append(Rejected(rows.sources[index], f"insert: {error}"))
            if batch.rejected:
                self._send_dead_letters(batch.rejected, wait)
            self._commit(consumer, batch, wait)
        except Abandoned:
            log.warning(
                "batch abandoned before commit: it will be consumed again",
                extra={"records": len(batch), "partitions": _partitions(batch)},
            )
            return
        finally:
            self._flushing = False
            self._resume(consumer)
        metrics.SINK_BATCH_ROWS.observe(len(batch))
        log.info(
            "batch written",
            extra={
                "records": len(batch),
                "rows": {table: len(rows.rows) for table, rows in batch.tables.items()},
                "dead_letters": len(batch.rejected),
                "partitions": _partitions(batch),
                "seconds": round(time.perf_counter() - started, 4),
            },
        )

    def _send_dead_letters(self, rejected: list[Rejected], wait: Callable[[float], bool]) -> None:
        attempt = 0
        while True:
            try:
                self.dead_letters.send(rejected)
                return
            except DeadLetterError as exc:
                attempt += 1
                log.warning("dead letters not acknowledged, will retry", extra={"error": str(exc)})
                if not wait(self.backoff.delay(attempt)):
                    raise Abandoned("dead-letter") from exc

    def _commit(self, consumer: Consumer, batch: Batch, wait: Callable[[float], bool]) -> None:
        attempt = 0
        while True:
            try:
                consumer.commit(offsets=batch.offsets(), asynchronous=False)
                metrics.SINK_COMMITS.inc()
                return
            except KafkaException as exc:
                # The rows are in ClickHouse; if this commit never happens they are replayed,
                # and the tables' deduplication absorbs the repeat.
                attempt += 1
                log.warning("commit failed", extra={"error": str(exc), "attempt": attempt})
                if not wait(self.backoff.delay(attempt)):
                    raise Abandoned("commit") from exc

    def _wait(self, consumer: Consumer, seconds: float, generation: int) -> bool:
        """Sleep ``seconds`` while staying in the group; False when the flush must give up."""
        if not self._paused:
            # Paused partitions fetch nothing, so polling here only serves heartbeats and
            # rebalance callbacks. Anything that still arrives (a partition assigned during the
            # wait) is kept for the next batch, never dropped.
            self._paused = list(consumer.assignment())
            consumer.pause(self._paused)
        deadline = time.monotonic() + seconds
        while True:
            if self._stop.is_set() or self._generation != generation:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            message = consumer.poll(min(left, 0.2))
            if message is not None:
                self._carry.append(message)

    def _resume(self, consumer: Consumer) -> None:
        if not self._paused:
            return
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        still_ours = [tp for tp in self._paused if (tp.topic, tp.partition) in owned]
        self._paused = []
        if still_ours:
            consumer.resume(still_ours)

    # ---- group membership ----------------------------------------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": _names(partitions)})
        self.assigned.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": _names(partitions)})
        if self._flushing:
            self._generation += 1  # the flush waiting for a retry abandons its batch
            return
        if len(self._batch):
            # Still ours for the length of this callback: write and commit now, one attempt
            # (no retries: polling is not allowed inside a rebalance callback).
            self._flush(consumer, can_wait=False)
        self._generation += 1

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Lost, not revoked: another member may own them already, a commit would be refused.
        log.warning("partitions lost", extra={"partitions": _names(partitions)})
        self._generation += 1
        self._batch = self._new_batch()

    # ---- metrics -------------------------------------------------------------------------

    def _report_lag(self, consumer: Consumer) -> None:
        now = time.monotonic()
        if now - self._lag_at < LAG_EVERY_SECONDS:
            return
        self._lag_at = now
        record_consumer_lag(consumer, self.group_id)


def _partitions(batch: Batch) -> dict[str, list[int]]:
    """topic/partition -> [first, last] offset of a batch, for logs."""
    return {f"{topic}/{part}": [first, last] for (topic, part), (first, last) in batch.ranges.items()}


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{p.topic}/{p.partition}" for p in partitions]
