"""Deliveries: Segment's request shapes and retry rules (pure: an in-memory HTTP transport)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import orjson
import pytest

from feedhouse import settings as settings_module
from feedhouse.audiences.delivery import Deliverer, build_request, retry_after, retryable_status
from feedhouse.dead_letters import DeadLetter
from feedhouse.retry import Abandoned, Backoff

MESSAGES = [{"type": "identify", "messageId": "fh-1.identify", "userId": "ada", "traits": {"vip": True}}]


class Letters:
    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    def send(self, letters: list[DeadLetter]) -> None:
        self.sent.extend(letters)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (501, False),
        (505, False),
        (408, True),
        (429, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
        (413, False),
    ],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    assert retryable_status(status) is retried


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("99999") == 3600.0  # capped
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after(later, now=now.timestamp()) == pytest.approx(30)
    assert retry_after("soon") is None and retry_after(None) is None


def test_segment_requests_are_batches_with_basic_auth() -> None:
    request = build_request("segment", {"endpoint": "https://api.example.com/", "writeKey": "wk"}, MESSAGES)
    assert request.url == "https://api.example.com/v1/batch"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"wk:").decode()
    body = orjson.loads(request.body)
    assert body["batch"] == MESSAGES and body["sentAt"].endswith("Z")


def test_webhook_requests_are_signed_arrays() -> None:
    request = build_request("webhook", {"url": "https://hooks.example.com/x", "secret": "s"}, MESSAGES)
    assert orjson.loads(request.body) == MESSAGES
    assert request.headers["X-Signature"] == hmac.new(b"s", request.body, hashlib.sha1).hexdigest()
    unsigned = build_request("webhook", {"url": "https://hooks.example.com/x", "secret": ""}, MESSAGES)
    assert "X-Signature" not in unsigned.headers


Responder = Callable[[httpx.Request], httpx.Response]


class Stop(threading.Event):
    """A stop flag whose waits return at once, recording how long they were asked to last."""

    def __init__(self) -> None:
        super().__init__()
        self.pauses: list[float] = []
        self.stopped = False

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout or 0.0)
        return self.stopped


@dataclass
class Rig:
    """A deliverer on an in-memory transport, what it sent, and the pauses it took."""

    deliverer: Deliverer
    letters: Letters
    stop: Stop
    seen: list[httpx.Request] = field(default_factory=list)

    @property
    def pauses(self) -> list[float]:
        return self.stop.pauses


@pytest.fixture
def make() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def build(responses: list[Responder | httpx.Response], give_up: float = 3600.0) -> Rig:
        current = settings_module.load({}, destination_give_up_seconds=give_up)
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            answer = responses[min(len(seen), len(responses)) - 1]
            return answer(request) if callable(answer) else answer

        stop = Stop()
        deliverer = Deliverer(
            current,
            "hook",
            "webhook",
            {"url": "http://receiver.test/in", "secret": "s"},
            stop,
            http=httpx.Client(transport=httpx.MockTransport(handler)),
            backoff=Backoff(initial=0.001, maximum=0.002),
        )
        rig = Rig(deliverer, Letters(), stop, seen)
        deliverer.dead_letters = rig.letters  # type: ignore[assignment]
        made.append(rig)
        return rig

    yield build
    for rig in made:
        rig.deliverer.http.close()


def test_server_errors_and_timeouts_are_retried_with_the_same_body(make: Callable[..., Rig]) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    rig = make([httpx.Response(500), timeout, httpx.Response(503), httpx.Response(200)])
    assert rig.deliverer.deliver(MESSAGES, first_seq=1) is True
    assert len(rig.seen) == 4 and len({request.content for request in rig.seen}) == 1
    assert rig.letters.sent == []
    assert len(rig.pauses) == 3


def test_retry_after_lengthens_the_pause(make: Callable[..., Rig]) -> None:
    rig = make([httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)])
    assert rig.deliverer.deliver(MESSAGES, first_seq=1) is True
    assert rig.pauses == [2.0]


def test_client_errors_are_dead_lettered_with_the_response_at_once(make: Callable[..., Rig]) -> None:
    rig = make([httpx.Response(400, text="bad writeKey")])
    assert rig.deliverer.deliver(MESSAGES, first_seq=42) is False
    assert len(rig.seen) == 1 and rig.pauses == []
    (letter,) = rig.letters.sent
    assert letter.offset == 42 and letter.topic == "destination:hook"
    assert "HTTP 400: bad writeKey" in letter.error and orjson.loads(letter.value) == MESSAGES


def test_retries_give_up_into_the_dead_letters(make: Callable[..., Rig]) -> None:
    rig = make([httpx.Response(502)], give_up=0.0)
    assert rig.deliverer.deliver(MESSAGES, first_seq=3) is False
    assert rig.letters.sent and rig.letters.sent[0].error.startswith("gave up after")


def test_a_stop_during_retries_settles_nothing(make: Callable[..., Rig]) -> None:
    rig = make([httpx.Response(500)])
    rig.stop.stopped = True
    with pytest.raises(Abandoned):
        rig.deliverer.deliver(MESSAGES, first_seq=1)
    assert rig.letters.sent == [] and len(rig.seen) == 1
