"""The app's status page on a real stack: the session's Tansu broker (lag), the test's chDB (what
is stored), and real supervised processes (``feedhouse.supervisor``, as ``feedhouse dev`` runs
them): one up, one crash-looping with its last words. Admin sessions only; HTML, JSON, Chromium."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.testclient import TestClient

from feedhouse.app.routes import app_routes
from feedhouse.health import Health
from feedhouse.kafka import producer_config
from feedhouse.retry import Backoff
from feedhouse.supervisor import ChildSpec, Supervisor
from tests.conftest import Pages, wait_until
from tests.integration.test_app_browser import customers
from tests.support.browser import BrowserPage, chromium, serve

pytestmark = pytest.mark.integration

LAST_WORDS = "<script>window.__pwned=1</script> bad config"
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
CRASHER = [sys.executable, "-c", f"import sys; print({LAST_WORDS!r}, flush=True); sys.exit(3)"]
WAITING = 3  # records produced to the events topic that no consumer group has read


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    running = Supervisor(
        [
            ChildSpec("worker", SLEEPER, {}, tmp_path / "worker.log"),
            ChildSpec("crasher", CRASHER, {}, tmp_path / "crasher.log"),
        ],
        backoff=Backoff(0.02, 0.05),
        crash_limit=3,
        crash_window=60,
    )
    running.start()
    try:
        wait_until(lambda: running.failing(running.child("crasher")), what="the crasher is failing")
        yield running
    finally:
        running.stop()


@pytest.fixture
def status_app(pages: Pages, supervisor: Supervisor) -> Starlette:
    """The app's routes wired as ``create_app`` wires them: the process's Health (with the
    supervisor's children, as ``feedhouse dev`` registers them) and the supervisor's report."""
    pages.send(*customers())
    producer = Producer(producer_config(pages.settings))
    for index in range(WAITING):
        producer.produce(pages.settings.topic("events"), key=f"k{index}".encode(), value=b"{}")
        # One batch per record: Tansu answers a partition's high watermark as its last batch's
        # base offset + 1, so records batched together would count as one.
        assert producer.flush(10) == 0, "the record was not delivered"
    health = Health()
    health.register_many(supervisor.health, [child.spec.name for child in supervisor.children])
    routes = app_routes(pages.settings, lambda: pages.clickhouse, health=health, processes=supervisor.status)
    return Starlette(routes=routes)


def signed_in(app: Starlette, token: str) -> TestClient:
    http = TestClient(app, follow_redirects=False)
    assert http.post("/login", data={"token": token, "next": "/people"}).status_code == 303
    return http


def test_the_status_page_needs_an_admin_session(pages: Pages, status_app: Starlette) -> None:
    anonymous = TestClient(status_app, follow_redirects=False)
    assert anonymous.get("/status").headers["location"] == "/login?next=%2Fstatus"
    reader = signed_in(status_app, pages.settings.read_token)
    refused = reader.get("/status")
    assert refused.status_code == 403 and "needs the admin token" in refused.text
    assert reader.get("/status", params={"format": "json"}).json()["code"] == "forbidden"
    assert 'href="/status"' not in reader.get("/people").text  # no link for read sessions
    admin = signed_in(status_app, pages.settings.admin_token)
    assert 'href="/status"' in admin.get("/people").text


def test_the_status_page_shows_components_lag_stored_and_disk(pages: Pages, status_app: Starlette) -> None:
    admin = signed_in(status_app, pages.settings.admin_token)
    report = admin.get("/status", params={"format": "json"}).json()
    assert report["ready"] is False  # the crasher is down
    worker, crasher = report["components"]["worker"], report["components"]["crasher"]
    assert worker["ok"] is True and worker["up"] is True and worker["pid"]
    assert crasher["ok"] is False and crasher["restarts"] >= 1 and "bad config" in crasher["last_error"]
    prefix = pages.settings.topic_prefix
    router = report["lag"][f"{prefix}identity-router"]
    assert router["lag"] == {"events": WAITING} and router["total"] == WAITING
    assert report["lag"][f"{prefix}sink"]["lag"]["events"] == WAITING
    assert report["stored"]["event_rows"] == len(customers()) and report["stored"]["profiles_about"] == 2
    assert report["disk"] and all(size >= 0 for size in report["disk"].values())

    response = admin.get("/status")
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    html = response.text
    assert "Not ready: a component is down." in html
    rows = dict(re.findall(r'<tr class="component" data-component="(\w+)">(.*?)</tr>', html, re.S))
    assert ">up<" in rows["worker"] and ">down<" in rows["crasher"]
    assert "keeps failing" in rows["crasher"] and "restarts" in rows["crasher"]
    # The last words of a process are shown, escaped.
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt; bad config" in rows["crasher"]
    assert "<script>window" not in html
    router_table = html.split(f'data-group="{prefix}identity-router"')[1].split("</table>")[0]
    assert re.search(rf'<th scope="row">events</th><td class="behind">{WAITING}</td>', router_table)
    assert f'<dd id="event-rows">{len(customers())}</dd>' in html
    assert "Disk (data directory)" in html and "No component is registered" not in html
    assert 'aria-current="page">Status</a>' in html


def test_the_status_page_in_chromium(pages: Pages, status_app: Starlette, tmp_path: Path) -> None:
    with chromium() as (_, browser), serve(status_app) as url:
        for width in (1280, 390):
            tab = BrowserPage(browser, url, width=width, height=900)
            try:
                tab.sign_in(pages.settings.admin_token)
                tab.page.get_by_role("link", name="Status").click()
                expect(tab.page.get_by_role("heading", level=1)).to_have_text("Status")
                expect(tab.page.locator("#ready")).to_have_text("Not ready: a component is down.")
                expect(tab.page.locator('tr[data-component="crasher"]')).to_contain_text("down")
                expect(tab.page.locator('tr[data-component="crasher"]')).to_contain_text(
                    "<script>window.__pwned=1</script> bad config"
                )
                expect(tab.page.locator('tr[data-component="worker"]')).to_contain_text("up")
                assert tab.page.evaluate("typeof window.__pwned") == "undefined"
                page_width, viewport = tab.no_horizontal_overflow()
                assert page_width <= viewport, f"/status at {width}px is {page_width}px wide"
                if width == 1280:
                    tab.screenshot("app-status", tmp_path, full_page=True)
                tab.assert_clean()
            finally:
                tab.close()
