"""Sending a batch of messages to one destination, with Segment's retry rules.

Two kinds of destination:

* ``segment``: any Segment HTTP Tracking API (Segment itself, another Feedhouse, RudderStack,
  Jitsu): ``POST {endpoint}/v1/batch`` with ``{"batch": [...], "sentAt"}`` and HTTP Basic auth
  (the write key as user name, empty password), as Segment's server libraries send.
* ``webhook``: ``POST {url}`` with the messages as a JSON array and, when a secret is set,
  ``X-Signature``: the hex HMAC-SHA1 of the body with the secret (Segment's Webhooks
  destination signs the same way, and ``/v1/webhook`` checks it).

Retried (exponential backoff with jitter, through ``feedhouse.retry``): connection errors,
timeouts, 5xx except 501 and 505, 408 and 429; a ``Retry-After`` header (seconds or an HTTP
date) lengthens the pause to what the receiver asked. Any other status is final: the batch is
set aside on the dead-letter topic with the response. Retries stop after
``FEEDHOUSE_DESTINATION_GIVE_UP_SECONDS`` (Segment: 4 hours), into the same dead letters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from feedhouse import metrics
from feedhouse.dead_letters import DeadLetter, DeadLetterError, DeadLetters
from feedhouse.retry import Backoff, retry
from feedhouse.settings import Settings

log = logging.getLogger(__name__)

SEGMENT = "segment"
WEBHOOK = "webhook"
USER_AGENT = "feedhouse-audiences/0.1.0"
NOT_RETRIED_5XX = frozenset({501, 505})
RETRIED_4XX = frozenset({408, 429})
MAX_RETRY_AFTER = 3600.0
BACKOFF = Backoff(initial=0.5, maximum=60.0, jitter=0.5)


class Retryable(Exception):
    """A failure worth another attempt; ``retry_after`` is what the receiver asked for."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """A final answer: the receiver will not take this batch as it is."""


def retryable_status(status: int) -> bool:
    return (status >= 500 and status not in NOT_RETRIED_5XX) or status in RETRIED_4XX


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, min(when.timestamp() - current, MAX_RETRY_AFTER))


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def build_request(kind: str, config: dict[str, Any], messages: list[dict[str, Any]]) -> Request:
    """The HTTP request that carries ``messages`` to a destination of ``kind``."""
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if kind == SEGMENT:
        sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = orjson.dumps({"batch": messages, "sentAt": sent_at})
        credentials = base64.b64encode(f"{config['writeKey']}:".encode()).decode()
        headers["Authorization"] = f"Basic {credentials}"
        return Request(str(config["endpoint"]).rstrip("/") + "/v1/batch", body, headers)
    body = orjson.dumps(messages)
    secret = config.get("secret") or ""
    if secret:
        headers["X-Signature"] = sign(secret, body)
    return Request(str(config["url"]), body, headers)


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


class Deliverer:
    """Delivers batches to one destination; each call returns only when the batch is settled."""

    def __init__(
        self,
        settings: Settings,
        key: str,
        kind: str,
        config: dict[str, Any],
        stop: threading.Event,
        *,
        http: httpx.Client | None = None,
        backoff: Backoff = BACKOFF,
    ) -> None:
        self.key = key
        self.kind = kind
        self.config = config
        self.stop = stop
        self.give_up_after = settings.destination_give_up_seconds
        self.http = http or httpx.Client(timeout=settings.destination_timeout_seconds, follow_redirects=False)
        self.dead_letters = DeadLetters(settings, "destination")
        self.backoff = backoff
        self._asked: float | None = None

    def close(self) -> None:
        self.http.close()
        self.dead_letters.close()

    def deliver(self, messages: list[dict[str, Any]], first_seq: int) -> bool:
        """Send ``messages``; True once acknowledged, False when they went to the dead letters.

        Raises ``feedhouse.retry.Abandoned`` when stopped while retrying (nothing is settled:
        the same batch is sent again by whoever resumes from the cursor).
        """
        request = build_request(self.kind, self.config, messages)
        try:
            retry(
                lambda: self._attempt(request),
                what=f"delivery to {self.key}",
                retry_on=lambda exc: isinstance(exc, Retryable),
                wait=self._wait,
                backoff=self.backoff,
                give_up_after=self.give_up_after,
            )
            return True
        except Retryable as exc:
            self._set_aside(request, first_seq, f"gave up after {self.give_up_after:.0f} s: {exc}")
        except Refused as exc:
            self._set_aside(request, first_seq, str(exc))
        return False

    def _attempt(self, request: Request) -> None:
        self._asked = None
        try:
            response = self.http.post(request.url, content=request.body, headers=request.headers)
        except httpx.TimeoutException as exc:
            metrics.child(metrics.DESTINATION_REQUESTS, self.key, "timeout").inc()
            raise Retryable(f"timeout: {exc}") from exc
        except httpx.HTTPError as exc:  # connection refused or reset, DNS, protocol errors
            metrics.child(metrics.DESTINATION_REQUESTS, self.key, "connection").inc()
            raise Retryable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        metrics.child(metrics.DESTINATION_REQUESTS, self.key, str(status)).inc()
        if 200 <= status < 300:
            return
        detail = f"HTTP {status}: {response.text[:1000]}"
        if retryable_status(status):
            self._asked = retry_after(response.headers.get("retry-after"))
            raise Retryable(detail, self._asked)
        raise Refused(detail)

    def _wait(self, seconds: float) -> bool:
        """The retry pause: the backoff's, or longer when the receiver asked (Retry-After)."""
        metrics.child(metrics.DESTINATION_RETRIES, self.key).inc()
        asked, self._asked = self._asked, None
        return not self.stop.wait(max(seconds, asked or 0.0))

    def _set_aside(self, request: Request, first_seq: int, error: str) -> None:
        letter = DeadLetter(
            key=self.key.encode(),
            value=request.body,
            topic=f"destination:{self.key}",
            partition=0,
            offset=first_seq,
            error=error,
        )
        log.error(
            "delivery set aside",
            extra={"destination": self.key, "first_seq": first_seq, "error": error[:300]},
        )
        retry(
            lambda: self.dead_letters.send([letter]),
            what="destination dead letter",
            retry_on=lambda exc: isinstance(exc, DeadLetterError),
            wait=lambda seconds: not self.stop.wait(seconds),
            backoff=Backoff(),
        )
