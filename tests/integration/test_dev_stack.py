"""`feedhouse dev` for real: data survives restarts (graceful and SIGKILL), it supervises itself,
and says plainly when it cannot start."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from feedhouse.settings import to_env
from tests.conftest import wait_until
from tests.support.dev_stack import DevStack

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def journeys(stack: DevStack, tag: str, people: int = 4) -> list[str]:
    """Anonymous visits, identify, alias, group and orders for ``people`` people, via the SDK."""
    sdk = Client(stack.settings.write_keys[0], host=stack.url, sync_mode=True, max_retries=0)
    ids: list[str] = []
    for n in range(people):
        at = [T0 + timedelta(minutes=10 * n + m) for m in range(8)]
        visitor, old, user = f"v{n}-{tag}", f"old{n}-{tag}", f"u{n}-{tag}"
        sdk.page(anonymous_id=visitor, name="Pricing", timestamp=at[0])
        sdk.identify(
            old, {"email": f"p{n}@example.com", "plan": "free"}, anonymous_id=visitor, timestamp=at[1]
        )
        sdk.alias(old, user, timestamp=at[2])
        sdk.group(user, f"g{n % 2}-{tag}", {"name": f"Group {n % 2}"}, timestamp=at[3])
        sdk.identify(user, {"plan": "pro"}, timestamp=at[4])
        sdk.track(user, "Order Completed", {"revenue": 10 + n}, timestamp=at[5])
        ids += [visitor, old, user]
    return ids


def settled(stack: DevStack, ids: list[str], events_per_person: int = 6) -> bool:
    """Every person is one profile with all its events, traits and group."""
    for visitor in ids[0::3]:
        response = stack.read(f"/v1/profiles/{visitor}")
        if response.status_code != 200:
            return False
        body = response.json()
        if (
            body["eventCount"] != events_per_person
            or not body["group"]
            or body["traits"].get("plan") != "pro"
        ):
            return False
        if not body["id"].startswith("u"):
            return False
    return True


def burst(stack: DevStack, user: str, count: int) -> list[str]:
    """``count`` tracks for ``user`` in batches; returns their messageIds (all acknowledged)."""
    ids = [f"burst-{uuid.uuid4().hex}" for _ in range(count)]
    for start in range(0, count, 100):
        batch = [
            {"type": "track", "userId": user, "event": "Clicked", "messageId": message_id}
            for message_id in ids[start : start + 100]
        ]
        response = httpx.post(
            f"{stack.url}/v1/batch",
            json={"batch": batch},
            auth=(stack.settings.write_keys[0], ""),
            timeout=30,
        )
        assert response.status_code == 200 and response.json()["accepted"] == len(batch), response.text
    return ids


def test_every_profile_and_timeline_survives_a_graceful_stop_and_a_sigkill(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "data", tmp_path / "dev.log").start()
    try:
        tag = uuid.uuid4().hex[:6]
        ids = journeys(stack, tag)
        wait_until(lambda: settled(stack, ids), timeout=90, interval=0.5, what="every journey merged")
        before = stack.snapshot(ids)
        assert all(entry["status"] == 200 for entry in before.values())

        assert stack.stop() == 0, stack.tail()
        stack.start()
        assert stack.snapshot(ids) == before, "a graceful restart changed what is stored"

        # Acknowledged (200) but most likely not yet in ClickHouse when the whole group dies.
        user = ids[2]
        sent = burst(stack, user, 300)
        stack.kill()
        stack.start()

        def arrived() -> bool:
            shown = {event["messageId"] for event in stack.timeline(user)}
            return set(sent) <= shown

        wait_until(arrived, timeout=90, interval=0.5, what="the burst sent before SIGKILL is in the timeline")
        after = stack.snapshot(ids)
        timeline = after[user]["timeline"]
        message_ids = [event["messageId"] for event in timeline]
        assert len(message_ids) == len(set(message_ids)), "an event shows twice after the restart"
        assert after[user]["profile"]["eventCount"] == before[user]["profile"]["eventCount"] + len(sent)
        assert [e for e in timeline if not e["messageId"].startswith("burst-")] == before[user]["timeline"]
        for identifier, entry in before.items():
            if after[identifier]["profile"]["id"] != after[user]["profile"]["id"]:
                assert after[identifier] == entry, f"{identifier} changed across a SIGKILL"
        assert stack.status()["ready"] is True
    finally:
        if stack.process is not None and stack.process.poll() is None:
            stack.stop()


def pid_of(stack: DevStack, component: str) -> int:
    pid = stack.status()["components"][component]["pid"]
    assert isinstance(pid, int), f"{component} has no pid: {stack.status()['components'][component]}"
    return pid


def test_each_supervised_process_comes_back_and_a_crash_loop_is_named(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "data", tmp_path / "dev.log").start()
    try:
        for component in ("objectstore", "broker", "identity-worker"):
            old = pid_of(stack, component)
            os.kill(old, signal.SIGKILL)

            def back(component: str = component, old: int = old) -> bool:
                info: dict[str, Any] = stack.status()["components"][component]
                return bool(info["up"] and info["pid"] != old and info["restarts"] >= 1)

            wait_until(back, timeout=60, interval=0.5, what=f"{component} restarted")
        wait_until(stack.ready, timeout=90, interval=0.5, what="ready again")
        # Still a working product after every part died once.
        sent = burst(stack, "after-restarts", 5)
        wait_until(
            lambda: {e["messageId"] for e in stack.timeline("after-restarts")} == set(sent),
            timeout=90,
            interval=0.5,
            what="events flow end to end after the restarts",
        )

        # A worker that keeps dying makes the stack unready, naming it.
        def unready_naming_the_worker() -> bool:
            with contextlib.suppress(ProcessLookupError, AssertionError):  # between restarts
                os.kill(pid_of(stack, "identity-worker"), signal.SIGKILL)
            response = httpx.get(f"{stack.url}/readyz", timeout=10)
            return response.status_code == 503 and "identity-worker" in response.json()["failing"]

        wait_until(
            unready_naming_the_worker, timeout=120, interval=0.5, what="readyz names the failing worker"
        )
    finally:
        stack.stop()


def test_a_start_that_finds_its_port_taken_exits_non_zero_naming_it(tmp_path: Path) -> None:
    stack = DevStack(tmp_path / "data", tmp_path / "dev.log", port_wait_seconds=1.0)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", stack.settings.kafka_port))
        holder.listen()
        with open(stack.log_path, "ab") as log:
            code = subprocess.run(
                [sys.executable, "-m", "feedhouse.cli", "dev"],
                env={**os.environ, **to_env(stack.settings)},
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
            ).returncode
    assert code != 0
    output = stack.tail()
    assert str(stack.settings.kafka_port) in output and "still in use" in output, output
