"""The sink as a thread of another process (embedded chDB: the server process hosts it).

The thread restarts the sink with a backoff if it fails (a consumer that hit a fatal error,
say), and reports its health for ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
import time

from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.clickhouse.migrate import prepare
from feedhouse.retry import Backoff
from feedhouse.settings import Settings
from feedhouse.sink.consumer import Sink

log = logging.getLogger(__name__)


class EmbeddedSink:
    """A :class:`Sink` on a daemon thread, restarted when it fails, until ``stop`` is set."""

    def __init__(self, settings: Settings, stop: threading.Event, *, apply_migrations: bool = True) -> None:
        self.settings = settings
        self.stop = stop
        self.apply_migrations = apply_migrations
        self.sink: Sink | None = None
        self.failures = 0
        self.last_error = ""
        self.thread = threading.Thread(target=self._run, name="feedhouse-sink", daemon=True)

    def start(self) -> EmbeddedSink:
        if self.apply_migrations:
            prepare(
                get_client(self.settings),
                database_for(self.settings),
                self.settings.retention_days,
                self.settings.clickhouse_cluster,
            )
        self.sink = Sink(self.settings)
        self.thread.start()
        return self

    def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while not self.stop.is_set():
            assert self.sink is not None
            try:
                self.sink.run(self.stop)
                return
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("embedded sink failed; restarting", extra={"failures": self.failures})
                if self.stop.wait(backoff.delay(self.failures)):
                    return
                self.sink = Sink(self.settings)

    def health(self) -> tuple[bool, str]:
        if not self.thread.is_alive():
            return False, f"sink thread stopped: {self.last_error or 'not started'}"
        if self.sink is None:
            return False, "not started"
        ok, detail = self.sink.loop.health()
        if self.failures and time.monotonic() - self.sink.loop.last_poll > 5:
            return False, f"restarting after {self.failures} failures: {self.last_error}"
        return ok, detail

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)


def start_embedded(
    settings: Settings, stop: threading.Event, *, apply_migrations: bool = True
) -> threading.Thread:
    """Migrate, then run a :class:`Sink` on a daemon thread until ``stop`` is set.

    Join the returned thread after setting ``stop``: the sink writes and commits the batch it
    holds before the thread ends.
    """
    return EmbeddedSink(settings, stop, apply_migrations=apply_migrations).start().thread
