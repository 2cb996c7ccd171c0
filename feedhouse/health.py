"""Readiness: every part a process depends on, checked by name.

``/readyz`` answers 200 only when every registered check passes, else 503 with the failing
parts named. The server registers Kafka and ClickHouse, and the embedded sink when it hosts
one; ``feedhouse dev`` adds the processes it supervises (object store, broker, identity worker),
so a worker that keeps dying makes the whole stack unready instead of silently stale.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

Check = Callable[[], tuple[bool, str]]  # (ok, detail)


class Health:
    """Named checks; each returns (ok, detail) and must not block for long."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def register(self, name: str, check: Check) -> None:
        with self._lock:
            self._checks[name] = check

    def register_default(self, name: str, check: Check) -> None:
        """Register ``check`` unless a check of that name exists (tests stand in for parts)."""
        with self._lock:
            self._checks.setdefault(name, check)

    def register_many(self, checks: Callable[[], dict[str, tuple[bool, str]]], names: list[str]) -> None:
        """Several components reported by one call (a supervisor's children)."""
        for name in names:
            self.register(name, lambda name=name: checks().get(name, (False, "unknown")))  # type: ignore[misc]

    def report(self) -> dict[str, tuple[bool, str]]:
        with self._lock:
            checks = dict(self._checks)
        results: dict[str, tuple[bool, str]] = {}
        for name, check in checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # a check that raises is a failing component, not a 500
                results[name] = (False, f"{type(exc).__name__}: {exc}"[:300])
        return results
