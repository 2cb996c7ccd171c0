"""Freshness probe: marker events sent at a steady rate, each timed from its 200 to being visible.

Two ways to see a marker, picked by :func:`read_api_available`:

* ``read-api``: ``GET /v1/profiles/{probe}/timeline`` with the read token, polled; a marker is
  visible once its messageId is in the answer (what a support agent would see);
* ``sink-commit`` (until the read API exists): a tail consumer finds each marker's partition
  and offset on the events topic; the marker is visible once the sink group committed past it
  (the sink commits only after the insert, so the row is queryable by then).

Every marker of a run belongs to one probe user, so a poll is one request whatever the number
of markers in flight. Freshness resolution is the poll interval.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from bench.common import READ_TOKEN, WRITE_KEY, percentile
from bench.traffic import OffsetWatcher, partitions_of
from feedhouse.avro.event_prefix import EventPrefixDecoder
from feedhouse.kafka import consumer_config
from feedhouse.settings import Settings


def read_api_available(current: Settings) -> bool:
    """Whether the gateway app serves the profile timeline route (the read API is there)."""
    from feedhouse.server import create_app

    app = create_app(current)
    return any("/timeline" in getattr(route, "path", "") for route in app.routes)


def message_ids(document: Any) -> set[str]:
    """Every ``messageId`` / ``message_id`` string anywhere in a JSON document."""
    found: set[str] = set()
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("messageId", "message_id") and isinstance(value, str):
                    found.add(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


@dataclass
class Marker:
    message_id: str
    phase: str
    sent: float  # monotonic time of the 200
    seen: float | None = None

    @property
    def freshness(self) -> float | None:
        return None if self.seen is None else self.seen - self.sent


@dataclass
class FreshnessProbe:
    """Sends markers (``rate`` per second) and polls for them every ``poll`` seconds."""

    url: str
    current: Settings
    mode: str
    rate: float = 10.0
    poll: float = 0.05
    phase: str = "warm-up"
    markers: dict[str, Marker] = field(default_factory=dict)
    user: str = field(default_factory=lambda: f"bench-probe-{uuid.uuid4().hex[:8]}")
    errors: int = 0

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._offsets: dict[str, tuple[int, int]] = {}  # messageId -> (partition, offset)
        self._params: dict[str, int] = {"limit": 100}  # dropped if the read API refuses it
        self._threads = [
            threading.Thread(target=self._send, name="probe-send", daemon=True),
            threading.Thread(target=self._watch, name="probe-watch", daemon=True),
        ]
        if self.mode == "sink-commit":
            self._tail = self._tail_consumer()
            self._threads.append(threading.Thread(target=self._follow_tail, name="probe-tail", daemon=True))

    def start(self) -> FreshnessProbe:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.mode == "sink-commit":
            self._tail.close()

    def wait_first_visible(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(marker.seen is not None for marker in self.markers.values()):
                    return
            time.sleep(0.05)
        raise TimeoutError(f"no probe marker became visible within {timeout:.0f} s ({self.mode})")

    def results(self, phase: str) -> list[Marker]:
        with self._lock:
            return [marker for marker in self.markers.values() if marker.phase == phase]

    def summary(self, phase: str) -> dict[str, Any]:
        markers = self.results(phase)
        values = [m.freshness for m in markers if m.freshness is not None]
        return {
            "markers": len(markers),
            "seen": len(values),
            "p50_s": percentile(values, 50),
            "p95_s": percentile(values, 95),
            "max_s": max(values) if values else None,
        }

    # ---- threads -----------------------------------------------------------------------------

    def _send(self) -> None:
        with httpx.Client(auth=(WRITE_KEY, ""), timeout=10) as client:
            index, next_at = 0, time.monotonic()
            while not self._stop.is_set():
                next_at += 1 / self.rate
                message_id = f"{self.user}-{index}"
                index += 1
                try:
                    response = client.post(
                        f"{self.url}/v1/track",
                        json={"userId": self.user, "event": "Bench Marker", "messageId": message_id},
                    )
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    with self._lock:
                        self.markers[message_id] = Marker(message_id, self.phase, time.monotonic())
                else:
                    self.errors += 1
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _watch(self) -> None:
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        watcher = OffsetWatcher(self.current, f"{self.current.topic_prefix}sink")
        topic = self.current.topic("events")
        partitions = partitions_of(self.current, topic)
        try:
            with httpx.Client(headers=headers, timeout=10) as client:
                while not self._stop.wait(self.poll):
                    if self.mode == "read-api":
                        visible = self._visible_in_timeline(client)
                    else:
                        visible = self._visible_by_commit(watcher.committed(topic, partitions))
                    now = time.monotonic()
                    with self._lock:
                        for message_id in visible:
                            marker = self.markers.get(message_id)
                            if marker is not None and marker.seen is None:
                                marker.seen = now
        finally:
            watcher.close()

    def _visible_in_timeline(self, client: httpx.Client) -> set[str]:
        try:
            response = client.get(f"{self.url}/v1/profiles/{self.user}/timeline", params=self._params)
        except httpx.HTTPError:
            return set()
        if response.status_code in (400, 422) and self._params:
            self._params = {}
        if response.status_code != 200:
            return set()
        return message_ids(response.json())

    def _visible_by_commit(self, committed: dict[int, int]) -> set[str]:
        with self._lock:
            located = list(self._offsets.items())
        return {mid for mid, (partition, offset) in located if committed.get(partition, 0) > offset}

    def _tail_consumer(self) -> Consumer:
        topic = self.current.topic("events")
        consumer = Consumer(consumer_config(self.current, f"bench-probe-{uuid.uuid4().hex[:8]}"))
        # From the high watermarks, not OFFSET_END (resolved lazily: markers could slip past).
        # Tansu's watermark may sit a few records early: those are read and skipped by key.
        start = []
        for partition in partitions_of(self.current, topic):
            high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            start.append(TopicPartition(topic, partition, max(0, high - 1)))
        consumer.assign(start)
        return consumer

    def _follow_tail(self) -> None:
        decoder = EventPrefixDecoder()
        key = self.user.encode()
        while not self._stop.is_set():
            for message in self._tail.consume(10_000, 0.1):
                if message.error() is None and message.key() == key:
                    event = decoder.decode(message.value() or b"")
                    with self._lock:
                        self._offsets[event["messageId"]] = (message.partition() or 0, message.offset() or 0)
