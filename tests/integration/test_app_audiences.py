"""The app's audiences pages and person page with Feedhouse's own audiences and computed traits,
over real chDB: definitions saved and evaluated by the audience engine (``Harness``), Engage's
audiences from identify calls beside them; HTML, JSON, and a Chromium walk through the pages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from feedhouse.app.views import audiences as audience_views
from feedhouse.app.views import people as people_views
from feedhouse.audiences.definitions import AUDIENCE, TRAIT
from tests.conftest import Pages
from tests.integration.test_app_browser import call, customers
from tests.support.audiences import Harness
from tests.support.browser import BrowserPage, chromium, serve

pytestmark = pytest.mark.integration

DAY = 86400
NAME = "<script>window.__pwned=1</script> Buyers"
HOSTILE_EVENT = '<img src=x onerror="window.__pwned=2">'
ORDERS = {"key": "orders", "name": "Orders", "compute": {"op": "count", "event": "Order Completed"}}
BUYERS = {"key": "buyers", "name": NAME, "when": {"trait": "orders", "op": "gte", "value": 1}}
# Engage has a vip_customers audience too (customers(): Ada): Feedhouse's wins the key.
VIP = {
    "key": "vip_customers",
    "name": "VIP (Feedhouse)",
    "when": {"trait": "plan", "op": "eq", "value": "pro"},
}
ODD = {"key": "odd_events", "compute": {"op": "count", "event": HOSTILE_EVENT}}


def today() -> int:
    now = int(time.time())
    return now - now % DAY


def orders() -> list[dict[str, Any]]:
    """More orders: Ada has 3 with customers()' own, Grace 1."""
    return [
        call("track", "o-1", 2 * DAY + 10, userId="ada", event="Order Completed"),
        call("track", "o-2", 3 * DAY + 30, userId="grace", event="Order Completed"),
        call("track", "o-3", 3 * DAY + 40, userId="ada", event="Order Completed"),
    ]


@pytest.fixture
def harness(pages: Pages) -> Harness:
    # The evaluator's clock is now: entries land today, inside the pages' 90-day chart.
    return Harness(pages.clickhouse, time.time_ns() // 1000)


@pytest.fixture
def defined(pages: Pages, harness: Harness) -> Harness:
    """Ada and Grace (customers()), their orders, and Feedhouse's definitions, evaluated."""
    pages.send(*customers(), *orders())
    harness.define(TRAIT, ORDERS)
    harness.define(TRAIT, ODD)
    harness.define(AUDIENCE, BUYERS)
    harness.define(AUDIENCE, VIP)
    harness.backfill_all()
    return harness


def test_a_definition_is_listed_backfilling_then_live_with_its_size(pages: Pages, harness: Harness) -> None:
    pages.send(*customers(), *orders())
    harness.define(TRAIT, ORDERS)
    harness.define(AUDIENCE, BUYERS)
    pages.sign_in()
    before = pages.page("/audiences", format="json").json()
    assert [(a["key"], a["computedBy"], a.get("status"), a["size"]) for a in before["audiences"]] == [
        ("buyers", "feedhouse", "backfilling", 0),
        ("vip_customers", "engage", None, 1),
    ]
    harness.backfill_all()
    after = pages.page("/audiences", format="json").json()
    assert [(a["key"], a.get("status"), a["size"]) for a in after["audiences"]] == [
        ("buyers", "live", 2),
        ("vip_customers", None, 1),
    ]
    (buyers, _) = after["audiences"]
    assert buyers["name"] == NAME and buyers["summary"] == "orders (computed) ≥ 1"
    assert buyers["when"] == {"trait": "orders", "op": "gte", "value": 1, "computed": True}
    assert [(t["key"], t["status"], t["size"], t["summary"]) for t in after["traits"]] == [
        ("orders", "live", 2, 'count of "Order Completed"')
    ]


def test_the_audiences_page_lists_both_systems_and_the_computed_traits(
    pages: Pages, defined: Harness
) -> None:
    pages.sign_in()
    listed = pages.page("/audiences", format="json").json()
    assert [(a["key"], a["computedBy"], a["size"]) for a in listed["audiences"]] == [
        ("buyers", "feedhouse", 2),
        ("vip_customers", "feedhouse", 1),
        ("vip_customers", "engage", 1),
    ]
    assert {t["key"]: t["size"] for t in listed["traits"]} == {"odd_events": 0, "orders": 2}
    html = pages.page("/audiences").text
    rows = re.findall(r'<tr class="by-(\w+)">(.*?)</tr>', html, re.S)
    assert [system for system, _ in rows] == ["feedhouse", "feedhouse", "engage"]
    buyers, vip, engage_vip = (row for _, row in rows)
    assert 'href="/audiences/buyers"' in buyers and ">live<" in buyers and "orders (computed) ≥ 1" in buyers
    assert 'href="/audiences/vip_customers"' in vip and "plan = &#34;pro&#34;" in vip
    # Engage's audience of a key Feedhouse also has is reached with ?computedBy=engage.
    assert 'href="/audiences/vip_customers?computedBy=engage"' in engage_vip and "Engage" in engage_vip
    traits = html.split('id="traits-h"')[1]
    assert "count of &#34;Order Completed&#34;" in traits
    # Operators' text is escaped like everything else: a name or event name carrying markup.
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt; Buyers" in html
    assert "<script>window.__pwned" not in html
    assert "count of &#34;&lt;img src=x onerror=\\&#34;window.__pwned=2\\&#34;&gt;&#34;" in traits
    assert "<img src=x" not in html


def test_a_feedhouse_audience_shows_its_definition_size_over_time_and_members(
    pages: Pages, defined: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages.sign_in()
    body = pages.page("/audiences/buyers", format="json").json()
    assert (body["computedBy"], body["size"], [m["id"] for m in body["members"]]) == (
        "feedhouse",
        2,
        ["ada", "grace"],
    )
    definition = body["definition"]
    assert (definition["status"], definition["revision"], definition["name"]) == ("live", 1, NAME)
    assert definition["summary"] == "orders (computed) ≥ 1"
    assert len(body["history"]) == 90
    assert body["history"][-1] == {"day": today(), "size": 2, "entered": 2, "exited": 0}
    assert all(day["size"] == 0 for day in body["history"][:-1])

    html = pages.page("/audiences/buyers").text
    assert "Audience <bdi>&lt;script&gt;window.__pwned=1&lt;/script&gt; Buyers</bdi>" in html
    assert "<script>window" not in html
    assert ">live<" in html and 'class="definition-text"><bdi>orders (computed) ≥ 1</bdi>' in html
    assert "&#34;trait&#34;: &#34;orders&#34;" in html  # the JSON, escaped, in a <pre>
    assert ": 2 members</title>" in html  # the chart's bar of today
    day = datetime.fromtimestamp(today(), UTC).strftime("%Y-%m-%d")
    assert re.search(rf'<time datetime="{day}">{day}</time></th><td>2</td><td>0</td><td>2</td>', html)
    assert 'href="/people/ada"' in html and 'href="/people/grace"' in html
    assert "Engage also has" not in html  # no Engage audience of this key

    # Members in keyset pages (one per page here).
    monkeypatch.setattr(audience_views, "PAGE", 1)
    first = pages.page("/audiences/buyers", format="json").json()
    assert [m["id"] for m in first["members"]] == ["ada"] and first["next"]
    second = pages.page("/audiences/buyers", format="json", cursor=first["next"]).json()
    assert [m["id"] for m in second["members"]] == ["grace"] and second["next"] is None
    assert "?cursor=" in pages.page("/audiences/buyers").text


def test_exits_show_in_the_history_of_a_changed_definition(pages: Pages, defined: Harness) -> None:
    defined.now += DAY * 1_000_000  # tomorrow, by the evaluator's clock
    defined.define(AUDIENCE, {**BUYERS, "when": {"trait": "orders", "op": "gte", "value": 2}})
    defined.backfill_all()
    pages.sign_in()
    body = pages.page("/audiences/buyers", format="json").json()
    assert [m["id"] for m in body["members"]] == ["ada"] and body["definition"]["revision"] == 2
    # The chart runs to the newest change (tomorrow): Grace's exit, after the two entries today.
    assert body["history"][-2:] == [
        {"day": today(), "size": 2, "entered": 2, "exited": 0},
        {"day": today() + DAY, "size": 1, "entered": 0, "exited": 1},
    ]
    grace = pages.page("/people/grace", format="json").json()
    assert grace["audiences"]["buyers"]["member"] is False and grace["audiences"]["buyers"]["exitedAt"]


def test_a_key_of_both_systems_opens_feedhouses_and_links_to_engages(pages: Pages, defined: Harness) -> None:
    pages.sign_in()
    ours = pages.page("/audiences/vip_customers", format="json").json()
    assert (ours["computedBy"], ours["definition"]["name"], [m["id"] for m in ours["members"]]) == (
        "feedhouse",
        "VIP (Feedhouse)",
        ["ada"],
    )
    html = pages.page("/audiences/vip_customers").text
    assert 'href="/audiences/vip_customers?computedBy=engage"' in html
    engage = pages.page("/audiences/vip_customers", format="json", computedBy="engage").json()
    assert (engage["computedBy"], engage["definition"], [m["id"] for m in engage["members"]]) == (
        "engage",
        None,
        ["ada"],
    )
    assert engage["history"][-1]["size"] == 1
    engage_html = pages.page("/audiences/vip_customers", computedBy="engage").text
    assert "This is Engage's audience" in engage_html and 'href="/audiences/vip_customers"' in engage_html
    assert pages.page("/audiences/buyers", computedBy="engage").status_code == 404
    assert pages.page("/audiences/orders").status_code == 404  # a computed trait is no audience
    assert pages.page("/audiences/buyers", computedBy="other").status_code == 400


def test_the_person_page_shows_feedhouses_audiences_and_computed_traits(
    pages: Pages, defined: Harness
) -> None:
    pages.sign_in()
    body = pages.page("/people/ada", format="json").json()
    assert {key: entry["computedBy"] for key, entry in body["audiences"].items()} == {
        "buyers": "feedhouse",
        "vip_customers": "feedhouse",
        "engage:vip_customers": "engage",
    }
    assert body["audiences"]["buyers"]["member"] is True and body["audiences"]["buyers"]["enteredAt"]
    assert body["computedTraits"] == {
        "orders": {"value": 3, "updatedAt": body["computedTraits"]["orders"]["updatedAt"]}
    }
    assert (
        body["traits"]["orders"] == 3
        and body["traitTimes"]["orders"] == body["computedTraits"]["orders"]["updatedAt"]
    )

    html = pages.page("/people/ada").text
    audiences = html.split('id="aud-h"')[1].split("</section>")[0]
    rows = re.findall(r'<tr class="by-(\w+)"><td><a href="([^"]+)"><bdi>([^<]+)</bdi>', audiences)
    assert rows == [
        ("feedhouse", "/audiences/buyers", "buyers"),
        ("feedhouse", "/audiences/vip_customers", "vip_customers"),
        ("engage", "/audiences/vip_customers?computedBy=engage", "vip_customers"),
    ]
    computed = html.split('id="computed-h"')[1].split("</section>")[0]
    assert re.search(r"<bdi>orders</bdi></th><td><bdi>3</bdi></td><td><time ", computed)
    assert "odd_events" not in computed  # no value: not shown
    grace = pages.page("/people/grace").text
    assert re.search(r"<bdi>orders</bdi></th><td><bdi>1</bdi>", grace)


@pytest.mark.parametrize("selective", [True, False], ids=["verified", "walked"])
def test_people_filtered_by_an_audience_of_either_system(
    pages: Pages, defined: Harness, monkeypatch: pytest.MonkeyPatch, selective: bool
) -> None:
    if not selective:
        monkeypatch.setattr(people_views, "SELECTIVE", 0)  # every filter walks people by last seen
    pages.sign_in()

    def listed(**filters: str) -> list[str]:
        return [p["id"] for p in pages.page("/people", format="json", **filters).json()["profiles"]]

    assert listed(audience="buyers") == ["ada", "grace"]  # most recently seen first
    assert listed(audience="buyers", q="plan=pro") == ["ada"]
    assert listed(audience="vip_customers") == ["ada"]  # both systems' Ada, once
    assert listed(audience="orders") == []  # a computed trait is no audience
    html = pages.page("/people", audience="buyers").text
    assert 'href="/people/ada"' in html and 'href="/people/grace"' in html
    # An exit counts: Grace leaves when the definition asks for two orders.
    defined.define(AUDIENCE, {**BUYERS, "when": {"trait": "orders", "op": "gte", "value": 2}})
    defined.backfill_all()
    assert listed(audience="buyers") == ["ada"]


def test_a_person_without_feedhouse_values_says_so(pages: Pages) -> None:
    pages.send(*customers())
    pages.sign_in()
    html = pages.page("/people/grace").text
    assert "In no audience." in html and "No computed trait has a value for this person." in html
    assert pages.page("/people/grace", format="json").json()["computedTraits"] == {}


# ---- in Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as (_, running):
        yield running


def test_walking_from_the_audiences_list_to_both_systems_in_chromium(
    pages: Pages, defined: Harness, browser: Browser, tmp_path: Path
) -> None:
    with serve(pages.asgi) as url:
        for width in (1280, 390):
            tab = BrowserPage(browser, url, width=width, height=900)
            try:
                tab.sign_in(pages.settings.read_token)
                tab.page.goto("/audiences")
                rows = tab.page.locator("table.audiences tbody tr")
                expect(rows).to_have_count(3)
                expect(rows.nth(0)).to_contain_text("Feedhouse")
                expect(rows.nth(0)).to_contain_text("live")
                expect(rows.nth(2)).to_contain_text("Engage")
                expect(tab.page.locator("table.traits tbody tr")).to_have_count(2)
                assert tab.page.evaluate("typeof window.__pwned") == "undefined"
                page_width, viewport = tab.no_horizontal_overflow()
                assert page_width <= viewport, f"/audiences at {width}px is {page_width}px wide"
                if width == 1280:
                    tab.screenshot("app-audiences-both", tmp_path)
                rows.nth(0).get_by_role("link").click()
                expect(tab.page.get_by_role("heading", level=1)).to_contain_text("<script>window.__pwned=1")
                expect(tab.page.locator(".definition-text")).to_have_text("orders (computed) ≥ 1")
                tab.page.get_by_text("As JSON").click()
                expect(tab.page.locator("details pre")).to_contain_text('"trait": "orders"')
                expect(tab.page.locator("table.people tbody tr")).to_have_count(2)
                expect(tab.page.locator(".chart svg rect")).to_have_count(1)  # today's bar
                assert tab.page.evaluate("typeof window.__pwned") == "undefined"
                page_width, viewport = tab.no_horizontal_overflow()
                assert page_width <= viewport, f"/audiences/buyers at {width}px is {page_width}px wide"
                if width == 1280:
                    tab.screenshot("app-audience-feedhouse", tmp_path, full_page=True)
                # The shared key: Feedhouse's page, then Engage's through its link.
                tab.page.goto("/audiences/vip_customers")
                expect(tab.page.get_by_role("heading", level=1)).to_have_text("Audience VIP (Feedhouse)")
                tab.page.get_by_role("link", name="Engage's vip_customers").click()
                expect(tab.page.locator(".audience-facts")).to_contain_text("Engage")
                assert tab.page.url.endswith("/audiences/vip_customers?computedBy=engage"), tab.page.url
                expect(tab.page.locator("table.people")).to_contain_text("Ada Lovelace")
                # Ada's page: both systems' audiences and her computed traits, at this width too.
                tab.page.get_by_role("link", name="Ada Lovelace").click()
                expect(tab.page.locator("table.person-audiences tbody tr")).to_have_count(3)
                expect(tab.page.locator("table.computed-traits")).to_contain_text("orders")
                page_width, viewport = tab.no_horizontal_overflow()
                assert page_width <= viewport, f"/people/ada at {width}px is {page_width}px wide"
                tab.page.locator("table.person-audiences").get_by_role("link", name="buyers").click()
                expect(tab.page.locator(".audience-facts")).to_contain_text("Feedhouse")
                tab.assert_clean()
            finally:
                tab.close()
