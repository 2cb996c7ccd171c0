"""The supervisor with real (tiny) child processes: restarts, crash loops, ports."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from feedhouse.retry import Backoff
from feedhouse.supervisor import ChildSpec, StartError, Supervisor, port_free, wait_for_ports
from tests.conftest import wait_until

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import sys; print('boom: bad config', flush=True); sys.exit(3)"]


def spec(tmp_path: Path, name: str, argv: list[str]) -> ChildSpec:
    return ChildSpec(name, argv, {}, tmp_path / f"{name}.log")


def test_a_child_that_dies_is_restarted_and_counted(tmp_path: Path) -> None:
    supervisor = Supervisor([spec(tmp_path, "sleeper", SLEEPER)], backoff=Backoff(0.05, 0.1))
    supervisor.start()
    try:
        child = supervisor.child("sleeper")
        first = child.process
        assert first is not None
        first.kill()
        wait_until(lambda: child.restarts == 1 and child.running, what="the sleeper restarted")
        assert child.process is not first
        ok, detail = supervisor.health()["sleeper"]
        assert ok and "1 restarts" in detail, detail
        assert supervisor.status()["sleeper"]["restarts"] == 1
    finally:
        supervisor.stop()
    assert not child.running


def test_a_child_that_keeps_dying_is_reported_failing_with_its_last_words(tmp_path: Path) -> None:
    supervisor = Supervisor(
        [spec(tmp_path, "crasher", CRASHER)], backoff=Backoff(0.02, 0.05), crash_limit=3, crash_window=30
    )
    supervisor.start()  # no readiness check: it starts, then dies
    try:
        wait_until(
            lambda: not supervisor.health()["crasher"][0] and supervisor.failing(supervisor.child("crasher"))
        )
        ok, detail = supervisor.health()["crasher"]
        assert not ok and "keeps failing" in detail and "boom: bad config" in detail, detail
    finally:
        supervisor.stop()


def test_a_child_that_never_gets_ready_fails_the_start(tmp_path: Path) -> None:
    never = ChildSpec("never", SLEEPER, {}, tmp_path / "never.log", ready=lambda: False, ready_timeout=0.3)
    supervisor = Supervisor([never])
    with pytest.raises(StartError, match="never not ready"):
        supervisor.start()
    assert not supervisor.child("never").running, "a failed start stops what it started"


def test_a_port_held_by_another_process_is_named() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_free(port)
        with pytest.raises(StartError, match=str(port)):
            wait_for_ports([port], 0.3, "broker")
    assert port_free(port)
    wait_for_ports([port], 0.3, "broker")  # free again: returns at once
