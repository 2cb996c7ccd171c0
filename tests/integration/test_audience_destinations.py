"""Changes leave Feedhouse as Segment calls, through real processes end to end.

Feedhouse A is a real ``feedhouse gateway`` with the sink, the evaluator and the senders
embedded (chDB) plus a real ``feedhouse worker``, on the session's Tansu broker; events arrive
through the official Python SDK. Two destinations:

* a second Feedhouse (B: gateway + worker on its own topics and chDB), as a ``segment``
  destination: A's audience arrives there as an Engage audience (identity rule 7) and shows in
  B's profile;
* a local HTTP receiver as a ``webhook`` destination that fails its first requests with 500s
  and one timeout: after deduplication by messageId it has every change exactly once, in order,
  each request signed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from segment.analytics import Client

from feedhouse.broker import EmbeddedBroker, free_port
from feedhouse.settings import Settings
from tests.conftest import FeedhouseProcess, GatewayProcess, make_settings, wait_until

pytestmark = pytest.mark.integration

SECRET = "receiver-shared-secret-0042"


@dataclasses.dataclass
class Stack:
    """One Feedhouse: gateway (+ embedded sink, evaluator, senders) and identity worker."""

    settings: Settings
    gateway: GatewayProcess
    worker: FeedhouseProcess

    @property
    def url(self) -> str:
        return self.gateway.url

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.admin_token}"}
        return httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=30)

    def read(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.read_token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)

    def sdk(self) -> Client:
        return Client(self.settings.write_keys[0], host=self.url, sync_mode=True, max_retries=0)

    def profile(self, identifier: str) -> dict[str, Any] | None:
        response = self.read(f"/v1/profiles/{identifier}")
        return response.json() if response.status_code == 200 else None

    def wait_live(self, path: str) -> None:
        wait_until(
            lambda: self.admin("GET", path).json().get("status") == "live", timeout=60, what=f"{path} live"
        )

    def stop(self) -> None:
        self.gateway.stop()
        self.worker.stop()


def start_stack(broker: EmbeddedBroker, root: Path, name: str, **overrides: Any) -> Stack:
    base = make_settings(broker, root / name / "data")
    current = dataclasses.replace(base, embedded_sink=True, **overrides)
    (root / name).mkdir(parents=True, exist_ok=True)
    worker = FeedhouseProcess(
        "worker", current, root / name / "worker.log", FEEDHOUSE_METRICS_PORT=str(free_port())
    )
    gateway = GatewayProcess(current, root / name / "gateway.log")
    return Stack(current, gateway, worker)


@pytest.fixture(scope="module")
def stack_a(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(
        broker,
        tmp_path_factory.mktemp("audiences"),
        "a",
        embedded_audiences=True,
        destination_timeout_seconds=1.0,
        audiences_space_id="spa_test_a",
    )
    yield stack
    stack.stop()


def audience_of(profile: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    return None if profile is None else profile["audiences"].get(key)


def test_an_audience_reaches_another_feedhouse_as_an_engage_audience(
    stack_a: Stack, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    b = start_stack(
        broker, tmp_path, "b", write_keys=("b-write-key",), read_token="b-read", admin_token="b-admin"
    )
    try:
        sdk = stack_a.sdk()
        # Ada orders once as an anonymous visitor and once signed in: one profile, two orders.
        sdk.track(anonymous_id="ada-phone", event="Order Completed", properties={"revenue": 30})
        sdk.identify("ada", {"plan": "pro"}, anonymous_id="ada-phone")
        sdk.track("ada", "Order Completed", {"revenue": 20})
        assert (
            stack_a.admin(
                "POST",
                "/v1/audiences",
                {
                    "key": "repeat_buyers",
                    "name": "Repeat Buyers",
                    "when": {
                        "all": [
                            {"event": "Order Completed", "count": {"op": "gte", "value": 2}},
                            {"trait": "plan", "op": "neq", "value": "free"},
                        ]
                    },
                },
            ).status_code
            == 201
        )
        stack_a.wait_live("/v1/audiences/repeat_buyers")
        wait_until(
            lambda: (audience_of(stack_a.profile("ada-phone"), "repeat_buyers") or {}).get("member"),
            timeout=60,
        )

        # The destination is created after the member entered: its initial sync carries her.
        created = stack_a.admin(
            "POST",
            "/v1/destinations",
            {
                "key": "feedhouse-b",
                "type": "segment",
                "endpoint": b.url,
                "writeKey": "b-write-key",
            },
        )
        assert created.status_code == 201, created.text

        def on_b(member: bool) -> dict[str, Any] | None:
            entry = audience_of(b.profile("ada"), "repeat_buyers")
            return entry if entry is not None and entry["member"] is member else None

        entered = wait_until(lambda: on_b(True), timeout=90, what="ada in repeat_buyers on B")
        assert isinstance(entered, dict) and entered["computedBy"] == "engage"
        profile = b.profile("ada")
        assert profile is not None and profile["traits"]["repeat_buyers"] is True
        timeline = b.read("/v1/profiles/ada/timeline").json()["events"]
        track = next(e for e in timeline if e["event"] == "Audience Entered")
        assert track["properties"] == {"audience_key": "repeat_buyers", "repeat_buyers": True}
        personas = track["context"]["personas"]
        assert personas["computation_class"] == "audience" and personas["computation_key"] == "repeat_buyers"
        assert personas["space_id"] == "spa_test_a" and personas["computation_id"].startswith("aud_")

        # A later change flows as a change: Ada downgrades, she exits on A and on B.
        sdk.identify("ada", {"plan": "free"})
        exited = wait_until(lambda: on_b(False), timeout=90, what="ada out of repeat_buyers on B")
        assert isinstance(exited, dict) and exited["exitedAt"] is not None
        delivery = stack_a.admin("GET", "/v1/destinations/feedhouse-b").json()["delivery"]
        assert delivery["initialSync"] == "done" and delivery["deadLettered"] == 0, delivery
        assert delivery["delivered"] >= 4, delivery  # the initial sync's entry, then the exit
    finally:
        stack_a.admin("DELETE", "/v1/destinations/feedhouse-b")
        b.stop()


@dataclasses.dataclass
class Receiver:
    """A webhook endpoint that fails its first requests: two 500s, then one too slow to answer."""

    secret: str
    failures: list[str] = dataclasses.field(default_factory=lambda: ["500", "500", "slow"])
    requests: list[tuple[str, bytes, bool]] = dataclasses.field(
        default_factory=list
    )  # (answer, body, signed)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def handle(self, body: bytes, signature: str | None) -> tuple[str, int, float]:
        expected = hmac.new(self.secret.encode(), body, hashlib.sha1).hexdigest()
        with self.lock:
            answer = self.failures.pop(0) if self.failures else "200"
            self.requests.append((answer, body, hmac.compare_digest(expected, signature or "")))
        if answer == "slow":
            return answer, 200, 3.0  # past the destination's 1 s timeout
        return answer, int(answer), 0.0

    def delivered(self) -> list[dict[str, Any]]:
        """Messages of acknowledged requests, deduplicated by messageId, in arrival order."""
        seen: dict[str, dict[str, Any]] = {}
        with self.lock:
            for answer, body, _ in self.requests:
                if answer == "200":
                    for message in orjson.loads(body):
                        seen.setdefault(message["messageId"], message)
        return list(seen.values())


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver(SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            _, status, delay = state.handle(body, self.headers.get("x-signature"))
            time.sleep(delay)  # the slow answer: the client has given up by then
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    thread.join(timeout=10)


def test_a_failing_receiver_gets_every_change_exactly_once_after_dedup(
    stack_a: Stack, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    assert (
        stack_a.admin(
            "POST",
            "/v1/audiences",
            {
                "key": "vip_buyers",
                "when": {
                    "all": [
                        {"event": "Order Completed"},
                        {"trait": "tier", "op": "eq", "value": "vip"},
                    ]
                },
            },
        ).status_code
        == 201
    )
    assert (
        stack_a.admin(
            "POST",
            "/v1/traits",
            {
                "key": "vip_order_count",
                "compute": {"op": "count", "event": "Order Completed"},
            },
        ).status_code
        == 201
    )
    stack_a.wait_live("/v1/audiences/vip_buyers")
    created = stack_a.admin(
        "POST",
        "/v1/destinations",
        {
            "key": "flaky",
            "type": "webhook",
            "url": url,
            "secret": SECRET,
            "only": ["vip_buyers"],
        },
    )
    assert created.status_code == 201
    sdk = stack_a.sdk()

    def member(user: str) -> bool | None:
        entry = audience_of(stack_a.profile(user), "vip_buyers")
        return None if entry is None else bool(entry["member"])

    # Each step waits for A to record the change before the next, so none is coalesced.
    for user in ("kim", "lou"):
        sdk.identify(user, {"tier": "vip"})
        sdk.track(user, "Order Completed", {"revenue": 5})
        wait_until(lambda user=user: member(user) is True, timeout=60, what=f"{user} entered")  # type: ignore[misc]
    sdk.identify("kim", {"tier": "basic"})
    wait_until(lambda: member("kim") is False, timeout=60, what="kim exited")
    sdk.identify("kim", {"tier": "vip"})
    wait_until(lambda: member("kim") is True, timeout=60, what="kim entered again")

    expected = [
        ("kim", "Audience Entered"),
        ("lou", "Audience Entered"),
        ("kim", "Audience Exited"),
        ("kim", "Audience Entered"),
    ]

    def tracks() -> list[tuple[str, str]]:
        return [(m["userId"], m["event"]) for m in state.delivered() if m["type"] == "track"]

    wait_until(lambda: len(tracks()) >= len(expected), timeout=120, what="every change delivered")
    assert tracks() == expected  # each change once, in the order it happened
    messages = state.delivered()
    assert len(messages) == 2 * len(expected)  # an identify and a track per change, nothing else
    assert {m["context"]["personas"]["computation_key"] for m in messages} == {"vip_buyers"}  # "only"
    identifies = [(m["userId"], m["traits"]["vip_buyers"]) for m in messages if m["type"] == "identify"]
    assert identifies == [("kim", True), ("lou", True), ("kim", False), ("kim", True)]
    answers = [answer for answer, _, _ in state.requests]
    assert answers[:3] == ["500", "500", "slow"] and "200" in answers
    # The failed attempts were retried with the very same body: same messageIds, no new ones.
    first_body = state.requests[0][1]
    assert any(body == first_body for answer, body, _ in state.requests if answer == "200")
    assert all(signed for _, _, signed in state.requests)
    delivery = stack_a.admin("GET", "/v1/destinations/flaky").json()["delivery"]
    assert delivery["deadLettered"] == 0
    metrics = httpx.get(f"{stack_a.url}/metrics", timeout=10).text
    assert 'feedhouse_destination_retries_total{destination="flaky"} 3.0' in metrics
    assert 'feedhouse_destination_requests_total{destination="flaky",outcome="timeout"} 1.0' in metrics
