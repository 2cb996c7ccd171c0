"""Shared fixtures: a real Tansu broker per test session, unique topic names per test."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker, free_port
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from tests.kafka_reader import KafkaReader

ROOT = Path(__file__).resolve().parent.parent


def wait_until(condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    """Settings on the session broker with topics no other test uses."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    current = settings_module.load(
        {},
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=prefix,
        events_partitions=4,
        produce_timeout_ms=3000,
        webhook_api_keys=("hook-key",),
        webhook_secret="hook-secret",
        data_dir=tmp_path / "data",
    )
    ensure_topics(current)
    return current


def settings_env(current: Settings) -> dict[str, str]:
    """The environment that makes a child process load ``current``."""
    env = dict(os.environ)
    for variable, (name, _, _) in settings_module.ENV.items():
        value = getattr(current, name)
        if isinstance(value, tuple | frozenset):
            value = ",".join(value)
        env[variable] = str(value)
    return env


@pytest.fixture
def reader(settings: Settings) -> Iterator[KafkaReader]:
    with KafkaReader(settings) as kafka_reader:
        yield kafka_reader


class GatewayProcess:
    """``feedhouse gateway`` as a child process on a free port."""

    def __init__(self, current: Settings, log_path: Path) -> None:
        self.port = free_port()
        env = settings_env(current)
        env["FEEDHOUSE_HTTP_PORT"] = str(self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feedhouse.cli", "gateway"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gateway exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(settings, tmp_path / "gateway.log")
    yield process
    process.stop()
