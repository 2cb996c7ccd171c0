"""Senders: one thread per destination, delivering the change log in order from its cursor.

A new destination first receives every current member and computed-trait value, as of the
newest change at that moment (``head``; the log is read up to it, so the snapshot is exact),
then every change after ``head``, in log order: a profile's changes of one definition reach
it in the order they happened. The cursor (``destination_cursors``) moves only after the
requests of a step are acknowledged or set aside, so a crash re-sends at most one step's
changes, with the same messageIds (at least once; receivers that deduplicate see each change
once). The initial sync records its progress the same way: interrupted, it resumes after the
last request recorded, with the same head.

Each destination has its own thread, HTTP client and ClickHouse client: a slow or dead one
only delays itself, never ingestion, the evaluator or the other destinations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse import metrics
from feedhouse.audiences.delivery import Deliverer
from feedhouse.audiences.messages import LOGGED_COLUMNS, LoggedChange, messages_for
from feedhouse.audiences.queries import MAX_SEQ_SQL
from feedhouse.audiences.store import Cursor, Store, StoredDestination, now_micros
from feedhouse.clickhouse.client import get_client
from feedhouse.read.sql import compose, one, rows
from feedhouse.retry import Abandoned
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 400_000  # under the 500 KB a Segment batch may hold
# Requests per step: a backlog is read and the cursor written once per STEP_REQUESTS requests
# (each is a ClickHouse round trip), not once per request; at most that many are sent again
# after a crash.
STEP_REQUESTS = 5
CHANGES_AFTER_SQL = compose(
    """
SELECT $columns FROM computed_changes WHERE seq > {after:UInt64} ORDER BY seq LIMIT {limit:UInt32}
""",
    columns=LOGGED_COLUMNS,
)
# The state of every profile with a value of one definition, as of change ``head``.
SNAPSHOT_SQL = compose(
    """
SELECT untuple(state)
FROM
(
    SELECT profile_id, argMax(($columns), seq) AS state
    FROM computed_changes
    WHERE computation_id = {computation:String} AND seq <= {head:UInt64} AND profile_id > {after:String}
    GROUP BY profile_id
)
WHERE state.8 = 1 OR state.9 != ''
ORDER BY profile_id
""",
    columns=LOGGED_COLUMNS,
)


class Sender:
    """Delivers the change log to one destination until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        destination: StoredDestination,
        stop: threading.Event,
        *,
        client: Client | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.settings = settings
        self.destination = destination
        self.stop = stop
        self.client = client or get_client(settings, purpose=f"sender:{destination.destination_id}")
        self.store = Store(self.client)
        self.deliverer = deliverer or Deliverer(
            settings, destination.key, destination.type, destination.config, stop
        )
        self.cursor = Cursor()
        self.only = frozenset(destination.only)

    def wanted(self, change: LoggedChange) -> bool:
        return not self.only or change.definition_key in self.only

    def run(self) -> None:
        key = self.destination.key
        log.info("sender started", extra={"destination": key, "type": self.destination.type})
        try:
            self.cursor = self.store.cursor(self.destination.destination_id) or Cursor()
            if not self.cursor.initial_done and not self.initial_sync():
                return
            while not self.stop.is_set():
                if not self.step():
                    self.stop.wait(self.settings.destination_poll_seconds)
        except Abandoned:
            pass
        finally:
            self.deliverer.close()
            log.info("sender stopped", extra={"destination": key})

    def head(self) -> int:
        return int(one(self.client, MAX_SEQ_SQL)[0] or 0)

    def initial_sync(self) -> bool:
        """Every current member / value (as of the newest change), then the cursor moves there;
        False when ``stop`` came first.

        Definitions go by computation id and profiles by id, and the cursor records the last
        request sent (every STEP_REQUESTS requests, and when stopped): a sync interrupted (a
        restart; a crash re-sends at most STEP_REQUESTS requests) resumes after it, with the
        same head, instead of sending every member again.
        """
        cursor = self.cursor
        resumed = cursor.sync_head > 0
        head = cursor.sync_head if resumed else self.head()
        definitions = sorted(self.store.definitions().by_key.values(), key=lambda d: d.computation_id)
        unsaved = 0  # requests sent since the progress was last recorded
        for stored in definitions:
            if (self.only and stored.key not in self.only) or stored.computation_id < cursor.sync_computation:
                continue
            after = cursor.sync_after if stored.computation_id == cursor.sync_computation else ""
            snapshot = [
                LoggedChange.of(row)
                for row in rows(
                    self.client, SNAPSHOT_SQL, computation=stored.computation_id, head=head, after=after
                )
            ]
            for batch in self.batches(snapshot):
                if self.stop.is_set():
                    if unsaved:
                        self._save(cursor)
                    return False
                ok, count = self.send(batch)
                cursor = replace(
                    cursor,
                    delivered=cursor.delivered + (count if ok else 0),
                    dead_lettered=cursor.dead_lettered + (0 if ok else count),
                    sync_head=head,
                    sync_computation=stored.computation_id,
                    sync_after=batch[-1].profile_id,
                )
                unsaved += 1
                if unsaved == STEP_REQUESTS:  # as for steps: one write per STEP_REQUESTS requests
                    cursor, unsaved = self._save(cursor), 0
        self._save(
            replace(cursor, seq=head, initial_done=True, sync_head=0, sync_computation="", sync_after="")
        )
        log.info(
            "initial sync done",
            extra={
                "destination": self.destination.key,
                "delivered": self.cursor.delivered,
                "dead_lettered": self.cursor.dead_lettered,
                "head": head,
                "resumed": resumed,
            },
        )
        return True

    def _save(self, cursor: Cursor) -> Cursor:
        """Record ``cursor``; it is then this sender's (with its new version)."""
        self.cursor = self.store.save_cursor(self.destination.destination_id, cursor)
        return self.cursor

    def step(self) -> bool:
        """Deliver the next changes after the cursor (up to STEP_REQUESTS requests' worth, in
        order, then the cursor moves once); False when there was none."""
        found = [
            LoggedChange.of(row)
            for row in rows(
                self.client,
                CHANGES_AFTER_SQL,
                after=self.cursor.seq,
                limit=self.settings.destination_batch_changes * STEP_REQUESTS,
            )
        ]
        key = self.destination.key
        if not found:
            metrics.child(metrics.DESTINATION_LAG_CHANGES, key).set(0)
            metrics.child(metrics.DESTINATION_LAG_SECONDS, key).set(0)
            return False
        metrics.child(metrics.DESTINATION_LAG_CHANGES, key).set(max(0, self.head() - self.cursor.seq))
        metrics.child(metrics.DESTINATION_LAG_SECONDS, key).set(
            max(0.0, (now_micros() - found[0].changed_at) / 1e6)
        )
        delivered = dead = 0
        for batch in self.batches([change for change in found if self.wanted(change)]):
            ok, count = self.send(batch)
            delivered += count if ok else 0
            dead += 0 if ok else count
        self.cursor = self.store.save_cursor(
            self.destination.destination_id,
            Cursor(
                found[-1].seq,
                True,
                self.cursor.delivered + delivered,
                self.cursor.dead_lettered + dead,
                version=self.cursor.version,
            ),
        )
        return True

    def batches(self, changes: list[LoggedChange]) -> Iterator[list[LoggedChange]]:
        """Changes grouped into requests of at most the batch size and ~400 KB."""
        batch: list[LoggedChange] = []
        size = 0
        for change in changes:
            weight = 800 + 2 * len(change.value)  # two messages of ~600 bytes, plus the value
            if batch and (
                len(batch) >= self.settings.destination_batch_changes or size + weight > MAX_BODY_BYTES
            ):
                yield batch
                batch, size = [], 0
            batch.append(change)
            size += weight
        if batch:
            yield batch

    def send(self, batch: list[LoggedChange]) -> tuple[bool, int]:
        """(acknowledged?, messages) for one request carrying ``batch``."""
        space = self.settings.audiences_space_id
        messages: list[dict[str, Any]] = [
            message for change in batch for message in messages_for(change, space)
        ]
        ok = self.deliverer.deliver(messages, batch[0].seq)
        key = self.destination.key
        metrics.child(metrics.DESTINATION_MESSAGES, key, "delivered" if ok else "dead_lettered").inc(
            len(messages)
        )
        if ok:
            now = now_micros()
            histogram = metrics.child(metrics.DESTINATION_DELIVERY_SECONDS, key)
            for change in batch:
                histogram.observe(max(0.0, (now - change.changed_at) / 1e6))
        return ok, len(messages)


class Dispatcher:
    """Keeps one :class:`Sender` thread per stored destination (started, stopped as they change)."""

    def __init__(
        self,
        settings: Settings,
        stop: threading.Event,
        *,
        client: Client | None = None,
        sender_factory: Callable[[StoredDestination, threading.Event], Sender] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.store = Store(client or get_client(settings, purpose="destinations"))
        self.factory = sender_factory or (lambda destination, halt: Sender(settings, destination, halt))
        self.interval = interval
        self.running: dict[str, tuple[threading.Event, threading.Thread]] = {}

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    self.sync()
                except Exception:  # ClickHouse away for a moment: keep the senders, try again
                    log.exception("could not read destinations")
                self.stop.wait(self.interval)
        finally:
            for halt, _ in self.running.values():
                halt.set()
            for _, thread in self.running.values():
                thread.join(timeout=15)

    def sync(self) -> None:
        wanted = {d.destination_id: d for d in self.store.destinations().values()}
        for destination_id, (halt, thread) in list(self.running.items()):
            if destination_id not in wanted or not thread.is_alive():
                halt.set()
                del self.running[destination_id]
        for destination_id, destination in wanted.items():
            if destination_id in self.running:
                continue
            halt = threading.Event()
            sender = self.factory(destination, halt)
            thread = threading.Thread(
                target=self._run, args=(sender,), name=f"sender-{destination.key}", daemon=True
            )
            self.running[destination_id] = (halt, thread)
            thread.start()

    def _run(self, sender: Sender) -> None:
        try:
            sender.run()
        except Exception:
            log.exception(
                "sender failed; restarted by the dispatcher", extra={"destination": sender.destination.key}
            )
            time.sleep(1.0)
