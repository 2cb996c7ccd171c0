"""The whole product as `make dev` runs it, driven by the official Python SDK and read back
through the read API: one person's anonymous visit, identify, alias, group and tracks come
back as one profile with one merged timeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from feedhouse import settings as settings_module
from feedhouse.broker import free_port
from feedhouse.settings import Settings
from tests.conftest import FeedhouseProcess, wait_until

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@dataclasses.dataclass
class Dev:
    settings: Settings
    url: str
    process: FeedhouseProcess

    def get(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.read_token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    root = tmp_path_factory.mktemp("dev")
    current = settings_module.load(
        {},
        http_port=free_port(),
        kafka_port=free_port(),
        broker_disk_port=free_port(),
        data_dir=root / "data",
        read_token="e2e-read-token",
        write_keys=("e2e-write-key",),
    )
    process = FeedhouseProcess("dev", current, root / "dev.log")
    url = f"http://127.0.0.1:{current.http_port}"

    def ready() -> bool:
        if process.process.poll() is not None:
            pytest.fail(f"feedhouse dev exited: {Path(root / 'dev.log').read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=90, interval=0.25)
    yield Dev(current, url, process)
    process.stop()


def test_one_person_one_profile_one_timeline(dev: Dev) -> None:
    sdk = Client("e2e-write-key", host=dev.url, sync_mode=True, max_retries=0)
    at = [T0 + timedelta(minutes=m) for m in range(10)]
    sdk.page(anonymous_id="visitor-7", name="Pricing", properties={"path": "/pricing"}, timestamp=at[0])
    sdk.track(anonymous_id="visitor-7", event="Viewed Plan", properties={"plan": "pro"}, timestamp=at[1])
    sdk.identify(
        "ada-old", {"email": "ada@example.com", "plan": "free"}, anonymous_id="visitor-7", timestamp=at[2]
    )
    sdk.alias("ada-old", "ada", timestamp=at[3])
    sdk.group("ada", "acme", {"name": "Acme Inc", "employees": 120}, timestamp=at[4])
    sdk.identify("ada", {"plan": "pro"}, timestamp=at[5])
    sdk.track("ada", "Order Completed", {"revenue": 99.5}, timestamp=at[6])
    sdk.track("ada", "Order Completed", {"revenue": 10.0}, timestamp=at[7])

    def merged() -> dict[str, Any] | None:
        response = dev.get("/v1/profiles/visitor-7")
        if response.status_code != 200:
            return None
        body = response.json()
        return body if body["id"] == "ada" and body["eventCount"] == 8 and body["group"] else None

    profile = wait_until(merged, timeout=60, interval=0.5)
    assert isinstance(profile, dict)
    assert set(profile["userIds"]) == {"ada", "ada-old"}
    assert profile["anonymousIds"] == ["visitor-7"]
    assert profile["traits"] == {"email": "ada@example.com", "plan": "pro"}  # newest plan wins
    assert profile["group"] == {"id": "acme", "traits": {"name": "Acme Inc", "employees": 120}}
    assert profile["firstSeen"].startswith("2026-11-02T09:00") and profile["lastSeen"].startswith(
        "2026-11-02T09:07"
    )
    # Every id of the person gives the same profile.
    for identifier in ("ada", "ada-old"):
        assert dev.get(f"/v1/profiles/{identifier}").json()["id"] == "ada"

    timeline = dev.get("/v1/profiles/ada-old/timeline", hidden="true").json()
    kinds = [(event["type"], event.get("event") or event.get("name")) for event in timeline["events"]]
    assert kinds == [
        ("track", "Order Completed"),
        ("track", "Order Completed"),
        ("identify", None),
        ("group", None),
        ("alias", None),
        ("identify", None),
        ("track", "Viewed Plan"),
        ("page", "Pricing"),
    ]
    # Page events are hidden unless asked for (Windsor's "Show Hidden Events").
    visible = dev.get("/v1/profiles/ada/timeline").json()["events"]
    assert [event["type"] for event in visible].count("page") == 0 and len(visible) == 7

    group = dev.get("/v1/groups/acme").json()
    assert group["members"] == ["ada"] and group["memberCount"] == 1
    assert dev.get("/v1/profiles/nobody-at-all").status_code == 404


def test_dev_prints_the_app_and_serves_it_with_the_profile_api(dev: Dev) -> None:
    banner = dev.process.log_path.read_text()
    assert f"App (people, feed)         {dev.url}/" in banner, banner[-2000:]
    assert "sign in with the read token: e2e-read-token" in banner
    sdk = Client("e2e-write-key", host=dev.url, sync_mode=True, max_retries=0)
    sdk.identify("app-user", {"name": "App User", "email": "app-user@example.com"}, anonymous_id="app-device")
    sdk.track("app-user", "Opened App")
    with httpx.Client(base_url=dev.url, timeout=10, follow_redirects=False) as browser:
        assert browser.get("/").headers["location"].startswith("/login")
        signed = browser.post("/login", data={"token": "e2e-read-token"})
        assert signed.status_code == 303, signed.text[:500]

        def shown() -> bool:
            page = browser.get("/people/app-device")
            return page.status_code == 200 and "Opened App" in page.text

        wait_until(shown, timeout=30, interval=0.25, what="the SDK's events on the person page")
        assert "App User" in browser.get("/people", params={"q": "app-user@example.com"}).text
    traits = httpx.get(
        f"{dev.url}/v1/spaces/default/collections/users/profiles/email:app-user@example.com/traits",
        auth=("e2e-read-token", ""),
        timeout=10,
    )
    assert traits.status_code == 200 and traits.json()["traits"]["name"] == "App User", traits.text
