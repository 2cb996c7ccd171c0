"""Where the evaluator and the senders run: threads of the server process, or a process of their own.

They read ClickHouse, and embedded chDB belongs to one process, so in the embedded shape
(``feedhouse dev``, ``FEEDHOUSE_EMBEDDED_AUDIENCES=true``) they are threads of the server
process next to the embedded sink; with a ClickHouse server, ``feedhouse audiences`` runs them
(exactly one such process: the evaluator is the change log's only writer).

Threads: the Kafka consumer (touched ids -> passes, ``audiences.stage``), the ticker
(definitions every second, finished backfills, window expiries every
``FEEDHOUSE_AUDIENCES_EXPIRY_SECONDS``), the backfill worker (one backfill query at a time),
and the dispatcher with one sender per destination (``audiences.senders``).
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from prometheus_client import start_http_server

from feedhouse.audiences.evaluator import Evaluator, Job
from feedhouse.audiences.senders import Dispatcher
from feedhouse.audiences.stage import TOPICS, EvaluatorStage
from feedhouse.audiences.store import now_micros
from feedhouse.clickhouse.client import close_clients, database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.consume import BatchConsumer
from feedhouse.kafka import ensure_topics
from feedhouse.privacy.deletions import DeletedIds
from feedhouse.privacy.executor import SECOND_PASS_SECONDS
from feedhouse.retry import Abandoned
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

GROUP_SUFFIX = "audiences"
REFRESH_SECONDS = 1.0
TICK_SECONDS = 0.1
BATCH_MESSAGES = 100_000
BACKFILL_GROUP = 5


class AudienceService:
    """The evaluator and the senders of one process. :meth:`start`, then set ``stop`` and :meth:`join`."""

    def __init__(
        self, settings: Settings, stop: threading.Event, *, clock: Callable[[], int] = now_micros
    ) -> None:
        self.settings = settings
        self.stop = stop
        client = get_client(settings, purpose="audiences")
        if settings.effective_clickhouse_url.startswith("chdb:"):
            # In-process ClickHouse shares the cores with ingestion: a pass uses one at most, so
            # the gateway and the sink always have the other (the backfill client is left alone:
            # backfills are rare and the sooner done the better).
            client.set_client_setting("max_threads", 1)
        self.evaluator = Evaluator(client, get_client(settings, purpose="audiences-backfill"), clock=clock)
        stage = EvaluatorStage(settings, self.evaluator)
        self.consumer = BatchConsumer(
            settings,
            stage,
            component="audiences",
            group_id=f"{settings.topic_prefix}{GROUP_SUFFIX}",
            topics=[settings.topic(name) for name in TOPICS],
            max_messages=BATCH_MESSAGES,
            max_seconds=settings.audiences_batch_seconds,
        )
        stage.pace = self.consumer.set_batch_seconds
        self.dispatcher = Dispatcher(settings, stop)
        # Deleted people: the cache forgets them at once, and again once the regulation
        # executor's second pass removed what was in flight (a pass may have cached it).
        self.deleted = DeletedIds(settings, on_change=self._people_deleted)
        self._forget_again_at: float | None = None
        self.threads: list[threading.Thread] = []

    def _people_deleted(self) -> None:
        self.evaluator.forget_cached()
        self._forget_again_at = time.monotonic() + SECOND_PASS_SECONDS + 5.0

    def _wait(self, seconds: float) -> bool:
        return not self.stop.wait(seconds)

    def start(self) -> AudienceService:
        # Definitions first: a batch consumed before them would skip the live definitions.
        self.evaluator.refresh(self._wait)
        self.deleted.start()
        for name, target in (
            ("audiences-consumer", self._consume),
            ("audiences-ticker", self._tick),
            ("audiences-backfill", self._backfill),
            ("audiences-senders", self.dispatcher.run),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.deleted.stop()

    def _consume(self) -> None:
        try:
            self.consumer.run(self.stop)
        except Exception:
            log.exception("audience evaluator consumer stopped on an error")
            raise

    def _tick(self) -> None:
        refreshed = expired = time.monotonic()
        while not self.stop.is_set():
            try:
                now = time.monotonic()
                if now - refreshed >= REFRESH_SECONDS:
                    self.evaluator.refresh(self._wait)
                    refreshed = now
                self.evaluator.apply_finished(self._wait)
                if self._forget_again_at is not None and now >= self._forget_again_at:
                    self._forget_again_at = None
                    self.evaluator.forget_cached()
                if now - expired >= self.settings.audiences_expiry_seconds:
                    self.evaluator.expire(self._wait)
                    expired = now
            except Abandoned:
                return
            except Exception:  # ClickHouse away for a moment: the next tick tries again
                log.exception("audience evaluator tick failed")
                self.stop.wait(1.0)
            self.stop.wait(TICK_SECONDS)

    def _backfill(self) -> None:
        while not self.stop.is_set():
            jobs = self._next_jobs()
            if not jobs:
                continue
            try:
                self.evaluator.run_backfills(jobs)
            except Exception:
                log.exception("backfill failed; retried", extra={"definitions": [j.stored.key for j in jobs]})
                self.stop.wait(2.0)
                for job in jobs:
                    if not job.cancelled:
                        self.evaluator.backfills.put(job)

    def _next_jobs(self) -> list[Job]:
        """Waiting backfills computed together: one scan of the events for up to BACKFILL_GROUP
        definitions scheduled with the same traits (defining 20 at once scans 4 times, not 20)."""
        try:
            first = self.evaluator.backfills.get(timeout=0.5)
        except queue.Empty:
            return []
        jobs = [first]
        while len(jobs) < BACKFILL_GROUP:
            try:
                job = self.evaluator.backfills.get_nowait()
            except queue.Empty:
                break
            if job.known != first.known:
                self.evaluator.backfills.put(job)
                break
            jobs.append(job)
        return [job for job in jobs if not job.cancelled]


def start_embedded(settings: Settings, stop: threading.Event) -> AudienceService:
    """Migrate, then run the evaluator and senders as threads of this process until ``stop``."""
    migrate(get_client(settings), database_for(settings), cluster=settings.clickhouse_cluster)
    return AudienceService(settings, stop).start()


def run_standalone(settings: Settings) -> int:
    """``feedhouse audiences``: migrate, serve /metrics, run until SIGTERM/SIGINT."""
    migrate(get_client(settings), database_for(settings), cluster=settings.clickhouse_cluster)
    ensure_topics(settings)
    server, _ = start_http_server(settings.metrics_port, addr=settings.http_host)
    print(
        f"feedhouse audiences: metrics on http://{settings.http_host}:{server.server_address[1]}/metrics",
        flush=True,
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service = AudienceService(settings, stop).start()
    code = 0
    try:
        while not stop.wait(0.5):
            if not all(thread.is_alive() for thread in service.threads):
                log.error("an audience thread stopped; exiting so that the process is restarted")
                code = 1
                stop.set()
    finally:
        service.join()
        server.shutdown()
        close_clients()
    return code
