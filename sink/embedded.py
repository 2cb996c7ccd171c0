"""The sink as a thread of another process (embedded chDB: the gateway process hosts it)."""

from __future__ import annotations

import logging
import threading

from feedhouse.clickhouse.client import database_for, get_client
from feedhouse.clickhouse.migrate import migrate
from feedhouse.settings import Settings
from feedhouse.sink.consumer import Sink

log = logging.getLogger(__name__)


def start_embedded(
    settings: Settings, stop: threading.Event, *, apply_migrations: bool = True
) -> threading.Thread:
    """Migrate, then run a :class:`Sink` on a daemon thread until ``stop`` is set.

    Join the returned thread after setting ``stop``: the sink writes and commits the batch it
    holds before the thread ends. The thread logs and ends if the sink fails for good.
    """
    if apply_migrations:
        migrate(get_client(settings), database_for(settings))
    sink = Sink(settings)

    def run() -> None:
        try:
            sink.run(stop)
        except Exception:
            log.exception("embedded sink stopped on an error")
            raise

    thread = threading.Thread(target=run, name="feedhouse-sink", daemon=True)
    thread.start()
    return thread
