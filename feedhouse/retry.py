"""The one retry helper: exponential backoff with jitter, sleeping through the caller's ``wait``.

Built on tenacity (its wait and stop strategies are what every retry here needs). What
Feedhouse adds is the sleep: a consumer that waits to retry must keep serving its Kafka group
(poll with paused partitions), and must give up at once when it is stopped or loses its
partitions. So the caller passes ``wait(seconds) -> bool``; ``False`` ends the retries with
:class:`Abandoned` (the work is redone by whoever consumes the partitions next).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

log = logging.getLogger(__name__)

T = TypeVar("T")
Wait = Callable[[float], bool]


class Abandoned(Exception):
    """The caller's ``wait`` said stop retrying (shutdown, or the partitions were revoked)."""


def sleep_wait(seconds: float) -> bool:
    """A ``wait`` that just sleeps (for callers with no group to serve)."""
    time.sleep(seconds)
    return True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: ``initial`` doubling up to ``maximum`` seconds, plus up to ``jitter``."""

    initial: float = 0.2
    maximum: float = 10.0
    jitter: float = 0.0

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (1-based), without jitter."""
        return float(min(self.maximum, self.initial * 2 ** max(0, attempt - 1)))

    def strategy(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(multiplier=self.initial, max=self.maximum, jitter=self.jitter)


def retry(
    action: Callable[[], T],
    *,
    what: str,
    retry_on: Callable[[BaseException], bool],
    wait: Wait,
    backoff: Backoff,
    give_up_after: float | None = None,
) -> T:
    """``action()``, retried while it raises an exception ``retry_on`` accepts.

    Between attempts: ``backoff``'s delay, spent in ``wait``; :class:`Abandoned` when ``wait``
    refuses. Exceptions ``retry_on`` refuses, and the last one after ``give_up_after`` seconds,
    propagate unchanged.
    """

    def sleep(seconds: float) -> None:
        if not wait(seconds):
            raise Abandoned(what)

    def log_retry(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            f"{what} failed, will retry",
            extra={
                "attempt": state.attempt_number,
                "retry_in_s": round(state.upcoming_sleep, 3),
                "error": f"{type(error).__name__}: {error}"[:500],
            },
        )

    retrying = tenacity.Retrying(
        sleep=sleep,
        wait=backoff.strategy(),
        retry=tenacity.retry_if_exception(retry_on),
        stop=tenacity.stop_after_delay(give_up_after) if give_up_after is not None else tenacity.stop_never,
        before_sleep=log_retry,
        reraise=True,
    )
    return retrying(action)
