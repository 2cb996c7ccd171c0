"""A destination's initial sync, interrupted and resumed, over real chDB and a real HTTP receiver.

The change log is filled by the audience engine (``Harness``); a ``Sender`` delivers it to a
webhook served by a local HTTP server, at most two changes per request. The first sender stops after
two requests (as at a restart); a second one must send only the rest: no member twice, none
missing, and the cursor then past the snapshot.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver.client import Client

from feedhouse.audiences.definitions import AUDIENCE, TRAIT
from feedhouse.audiences.senders import Sender
from feedhouse.audiences.store import Store, StoredDestination, now_micros
from feedhouse.settings import Settings
from tests.conftest import ReadApi, wait_until
from tests.support.audiences import Harness

pytestmark = pytest.mark.integration

PEOPLE = ("ann", "ben", "cy", "di", "ed")


class Receiver:
    """A webhook endpoint keeping every request's messages; ``on_request`` runs for each, before
    the answer."""

    def __init__(self) -> None:
        self.requests: list[list[dict[str, Any]]] = []
        self.on_request: Any = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(orjson.loads(body))
                if receiver.on_request is not None:  # before answering: the sender sees its effect
                    receiver.on_request(len(receiver.requests))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self) -> list[dict[str, Any]]:
        return [message for request in self.requests for message in request]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.server.shutdown()


def run_sender(
    settings: Settings, destination: StoredDestination, client: Client, stop: threading.Event
) -> None:
    sender = Sender(settings, destination, stop, client=client)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    return_when = Store(client)
    # Until the sender stopped by itself (interrupted) or finished its sync (then it is stopped).
    wait_until(
        lambda: (
            not thread.is_alive()
            or getattr(return_when.cursor(destination.destination_id), "initial_done", False)
        ),
        timeout=30,
        what="the initial sync to stop or finish",
    )
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the sender did not stop"


def test_an_interrupted_initial_sync_resumes_after_its_last_request(
    settings: Settings, clickhouse: Client, read_api: ReadApi, receiver: Receiver
) -> None:
    orders: list[dict[str, object]] = [
        {
            "type": "track",
            "messageId": f"o-{person}",
            "timestamp": "2026-03-02T09:00:00Z",
            "userId": person,
            "event": "Order Completed",
        }
        for person in PEOPLE
    ]
    read_api.send(*orders)
    harness = Harness(clickhouse, now_micros())
    harness.define(TRAIT, {"key": "orders", "compute": {"op": "count", "event": "Order Completed"}})
    harness.define(AUDIENCE, {"key": "buyers", "when": {"trait": "orders", "op": "gte", "value": 1}})
    harness.backfill_all()
    assert len(harness.changes()) == 2 * len(PEOPLE)  # a value and a membership each

    destination = StoredDestination(
        "hook", "dst_resume", "webhook", {"url": receiver.url, "secret": "s"}, (), False, now_micros(), 1
    )
    Store(clickhouse).save_destination(destination)
    two_per_request = dataclasses.replace(settings, destination_batch_changes=2)

    first = threading.Event()
    receiver.on_request = lambda count: first.set() if count == 2 else None  # a restart, after 2
    run_sender(two_per_request, destination, clickhouse, first)
    assert len(receiver.requests) == 2
    cursor = Store(clickhouse).cursor(destination.destination_id)
    assert cursor is not None and not cursor.initial_done and cursor.sync_head > 0, cursor
    assert cursor.delivered == len(receiver.messages()) and cursor.sync_after, cursor  # messages

    receiver.on_request = None
    run_sender(two_per_request, destination, clickhouse, threading.Event())
    # The rest only: per definition 5 changes in requests of 2, 2 and 1, so 6 in all; none twice.
    assert len(receiver.requests) == 6
    ids = [message["messageId"] for message in receiver.messages()]
    assert len(ids) == len(set(ids)), f"sent twice: {sorted(i for i in set(ids) if ids.count(i) > 1)}"
    synced = {
        (message["context"]["personas"]["computation_key"], message["userId"])
        for message in receiver.messages()
    }
    assert synced == {(key, person) for key in ("orders", "buyers") for person in PEOPLE}
    done = Store(clickhouse).cursor(destination.destination_id)
    # An audience change is two messages (identify, Audience Entered), a trait value one.
    assert done is not None and done.initial_done and done.delivered == len(ids) == 15, done
    assert (done.seq, done.sync_head, done.sync_computation, done.sync_after) == (cursor.sync_head, 0, "", "")
