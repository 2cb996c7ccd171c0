from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from feedhouse import settings as settings_module
from feedhouse.health import Health
from feedhouse.server import create_app
from feedhouse.settings import Settings
from tests.unit.fakes import RecordingPublisher


@pytest.fixture
def unit_settings() -> Settings:
    return settings_module.load(
        {}, write_keys=("wk", "other-key"), webhook_api_keys=("hook-key",), webhook_secret="hook-secret"
    )


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def client(unit_settings: Settings, publisher: RecordingPublisher) -> Iterator[TestClient]:
    # Pure unit tests: no ClickHouse behind the HTTP layer (the integration tests have one).
    health = Health()
    health.register("clickhouse", lambda: (True, "not used by unit tests"))
    with TestClient(create_app(unit_settings, publisher, health=health)) as test_client:  # type: ignore[arg-type]
        yield test_client
