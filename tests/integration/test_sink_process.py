"""``feedhouse sink`` as its own process: kill -9 mid-stream, restart, every event exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from feedhouse.clickhouse.client import close_clients, get_client
from feedhouse.settings import Settings
from tests.conftest import ROOT, settings_env, wait_until
from tests.integration.test_sink import Topics, committed, event, fast

pytestmark = pytest.mark.integration
TOTAL = 30_000


class SinkProcess:
    """``python -m feedhouse.cli sink`` with this test's settings; stdout+stderr to a log file."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.log_path = log_path
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feedhouse.cli", "sink"],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"sink exited with {self.process.returncode}: {self.log_path.read_text()[-3000:]}")
        return True

    def metrics_url(self) -> str | None:
        announced = [
            line.split(" on ", 1)[1].strip()
            for line in self.log_path.read_text().splitlines()
            if line.startswith("feedhouse sink: metrics on ")
        ]
        return announced[-1] if announced else None  # the log is shared with a previous run

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self._log.close()
        return code


def consumed_all(sink: SinkProcess, settings: Settings) -> bool:
    """The sink's consumer-lag gauge reads 0 on every events partition."""
    url = sink.metrics_url()
    if url is None:
        return False
    lags = [
        sample.value
        for family in text_string_to_metric_families(httpx.get(url, timeout=5).text)
        if family.name == "feedhouse_consumer_lag"
        for sample in family.samples
        if sample.labels["topic"] == settings.topic("events")
    ]
    return len(lags) == settings.events_partitions and not any(lags)


def committed_total(settings: Settings) -> int:
    return sum(committed(settings, f"{settings.topic_prefix}sink", settings.topic("events")).values())


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[Settings], SinkProcess]]:
    """Starts sink processes (sharing one log); kills any still running after the test.

    The sink process owns the test's chDB directory while it runs: this process opens it only
    once the sink has exited, and closes it after the test.
    """
    close_clients()
    started: list[SinkProcess] = []

    def start(current: Settings) -> SinkProcess:
        started.append(SinkProcess(current, tmp_path / "sink.log"))
        return started[-1]

    yield start
    for process in started:
        if process.process.poll() is None:
            process.kill()
    close_clients()


def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(
    settings: Settings, spawn: Callable[[Settings], SinkProcess]
) -> None:
    current = fast(settings, sink_batch_rows=1000, sink_batch_seconds=0.1)
    # A backlog the sink works through in 1,000-record batches; it is killed part-way.
    topics = Topics(current)
    for start in range(0, TOTAL, 5000):
        topics.send("events", [event(i) for i in range(start, start + 5000)], key_field="userId")
    first = spawn(current)
    wait_until(lambda: first.alive() and committed_total(current) >= 3000, timeout=60)
    first.kill()
    at_kill = committed_total(current)
    assert at_kill < TOTAL  # killed mid-stream

    second = spawn(current)
    wait_until(lambda: second.alive() and committed_total(current) == TOTAL, timeout=60)
    url = second.metrics_url()
    assert url is not None and "feedhouse_sink_rows_inserted_total" in httpx.get(url, timeout=5).text
    assert second.terminate() == 0  # SIGTERM: clean stop

    client = get_client(current)
    assert client.query("SELECT count(), uniqExact(message_id) FROM events FINAL").result_rows == [
        (TOTAL, TOTAL)
    ]
    assert client.query("SELECT count() FROM events_resolved").result_rows == [(TOTAL,)]
    # Replays after the kill may have stored some rows twice; queries never show them.
    assert client.query("SELECT count() >= {n:UInt64} FROM events", parameters={"n": TOTAL}).result_rows == [
        (1,)
    ]


def test_sigterm_writes_and_commits_the_batch_in_hand(
    settings: Settings, spawn: Callable[[Settings], SinkProcess]
) -> None:
    # A batch that would only close after a minute: SIGTERM must write and commit it anyway.
    current = fast(settings, sink_batch_rows=100_000, sink_batch_seconds=60)
    Topics(current).send("events", [event(i) for i in range(500)], key_field="userId")
    sink = spawn(current)
    # Everything consumed (lag 0 on every partition) but nothing written yet.
    wait_until(lambda: sink.alive() and consumed_all(sink, current), timeout=30)
    assert "batch written" not in sink.log_path.read_text()
    assert sink.terminate() == 0
    assert committed_total(current) == 500
    client = get_client(current)
    assert client.query("SELECT count() FROM events FINAL").result_rows == [(500,)]
