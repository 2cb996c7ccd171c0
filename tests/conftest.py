"""Shared fixtures: a real Tansu broker per test session, unique topic names per test."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from clickhouse_connect.driver.client import Client

from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker, die_with_parent, free_port
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings
from tests.support.kafka_reader import KafkaReader

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``.

    The failure says what was awaited (``what``, else the condition's source line) and the last
    value the condition returned.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout}s: {what or _source(condition)}; last value: {value!r}")
        time.sleep(interval)


def _source(function: Callable[[], object]) -> str:
    try:
        return inspect.getsource(function).strip()
    except (OSError, TypeError):
        return repr(function)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as running:
        yield running


def make_settings(broker: EmbeddedBroker, data_dir: Path) -> Settings:
    """Settings on the session broker with topics (and consumer groups) no other test uses."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    current = settings_module.load(
        {},
        kafka_bootstrap_servers=broker.bootstrap,
        topic_prefix=prefix,
        events_partitions=4,
        produce_timeout_ms=3000,
        webhook_api_keys=("hook-key",),
        webhook_secret="hook-secret",
        data_dir=data_dir,
        changelog_seals=True,  # the session broker is Tansu
    )
    ensure_topics(current)
    return current


@pytest.fixture
def settings(broker: EmbeddedBroker, tmp_path: Path) -> Settings:
    return make_settings(broker, tmp_path / "data")


def settings_env(current: Settings) -> dict[str, str]:
    """This process's environment plus the variables that make a child load ``current``."""
    return {**os.environ, **settings_module.to_env(current)}


@pytest.fixture
def reader(settings: Settings) -> Iterator[KafkaReader]:
    with KafkaReader(settings) as kafka_reader:
        yield kafka_reader


class FeedhouseProcess:
    """A ``feedhouse <command>`` child process configured by ``current``."""

    def __init__(self, command: str, current: Settings, log_path: Path, **env_overrides: str) -> None:
        env = settings_env(current)
        env.update(env_overrides)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "feedhouse.cli", command],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # a test run killed hard leaves no process behind
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no commits, no goodbyes."""
        self.process.kill()
        self.process.wait(timeout=15)
        self._log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


class GatewayProcess(FeedhouseProcess):
    """``feedhouse gateway`` on a free port, returned once it is ready (/readyz)."""

    def __init__(self, current: Settings, log_path: Path) -> None:
        # As a deployment does: the schema first (readiness needs ClickHouse's tables).
        subprocess.run(
            [sys.executable, "-m", "feedhouse.cli", "migrate"],
            env=settings_env(current),
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("gateway", current, log_path, FEEDHOUSE_HTTP_PORT=str(self.port))
        wait_until(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gateway exited with {self.process.returncode}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


@pytest.fixture
def gateway(settings: Settings, tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(settings, tmp_path / "gateway.log")
    yield process
    process.stop()


@pytest.fixture
def ch_client(settings: Settings) -> Iterator[Client]:
    """The process's ClickHouse client on this test's own chDB directory (under tmp_path).

    chDB hosts one data directory per process: every client is closed after the test so the
    next test can open its own.
    """
    from feedhouse.clickhouse.client import close_clients, get_client

    client = get_client(settings)
    yield client
    close_clients()


@pytest.fixture
def clickhouse(ch_client: Client, settings: Settings) -> Client:
    """``ch_client`` with every migration applied."""
    from feedhouse.clickhouse.client import database_for
    from feedhouse.clickhouse.migrate import migrate

    migrate(ch_client, database_for(settings))
    return ch_client


class ReadApi:
    """The read API in a bare Starlette app on the test's migrated chDB, and a way to fill it.

    ``send`` puts Segment calls through the pipeline's own pure stages (``bench.read_dataset``:
    normalisation, identity workers, sink rows) and inserts the rows, so tests state what
    happened in Segment terms and the tables hold what the real pipeline would write.
    """

    def __init__(self, settings: Settings, clickhouse: Client, with_app: bool = False) -> None:
        from starlette.applications import Starlette
        from starlette.testclient import TestClient

        from feedhouse.app.routes import app_routes
        from feedhouse.read.api import read_routes
        from tests.support.offline_pipeline import OfflinePipeline

        self.settings = settings
        self.clickhouse = clickhouse
        self.pipeline = OfflinePipeline(settings.placeholder_ids)
        self.records: dict[str, dict[str, Any]] = {}
        lanes = None
        if with_app:
            from feedhouse.clickhouse.client import get_client
            from feedhouse.read.lanes import Lanes

            # Lanes are more chDB clients on the same engine: the parallel queries are real.
            lanes = Lanes(lambda lane: get_client(settings, f"lane-{lane}"))
        routes = read_routes(settings, lambda: clickhouse, lanes=lanes)
        if with_app:
            routes += app_routes(settings, lambda: clickhouse, lanes)
        self.asgi = Starlette(routes=routes)
        self.http = TestClient(self.asgi, follow_redirects=False)

    def send(self, *calls: dict[str, object]) -> None:
        for call in calls:
            record = self.pipeline.add(call)
            self.records[str(record["messageId"])] = record
        self.pipeline.flush(self.clickhouse)

    def pipeline_records(self, message_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The event records (``avro/schemas/event``) ``send`` stored for ``message_ids``."""
        return [self.records[message_id] for message_id in message_ids]

    def get(self, path: str, token: str | None = None, **params: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.read_token if token is None else token}"}
        return self.http.get(path, params=params, headers=headers)


@pytest.fixture
def read_api(settings: Settings, clickhouse: Client) -> ReadApi:
    return ReadApi(settings, clickhouse)


class Pages(ReadApi):
    """The read API *and* the app's pages on the test's chDB (``send`` fills it, as for ReadApi)."""

    def __init__(self, settings: Settings, clickhouse: Client) -> None:
        super().__init__(settings, clickhouse, with_app=True)

    def sign_in(self, token: str | None = None) -> httpx.Response:
        """POST the sign-in form; the session cookie stays in ``self.http``'s cookie jar."""
        token = self.settings.read_token if token is None else token
        return self.http.post("/login", data={"token": token, "next": "/people"})

    def page(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params=params)


@pytest.fixture
def pages(settings: Settings, clickhouse: Client) -> Pages:
    return Pages(settings, clickhouse)
