"""Every page of the app over HTTP on real chDB: sign-in, sessions and CSRF, HTML and JSON, paging.

The browser tests (test_app_browser.py) drive the same pages in Chromium; these check what a
browser does not show: headers, status codes, cookies, JSON shapes, refusals.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from feedhouse.app.session import COOKIE
from tests.conftest import Pages
from tests.integration.test_app_browser import call, customers, hostile_calls

pytestmark = pytest.mark.integration

PAGES = ["/", "/people", "/people/ada", "/feed", "/groups/acme", "/audiences", "/audiences/vip_customers"]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_every_page_redirects_to_sign_in_without_a_session(pages: Pages) -> None:
    pages.send(*customers())
    for path in PAGES:
        response = pages.page(path)
        assert response.status_code == 303, (path, response.status_code)
        assert response.headers["location"] == f"/login?next={quote(path, safe='')}"
    # Data requests get a 401, not a redirect to a form.
    assert pages.page("/feed", fragment="1").status_code == 401
    assert pages.page("/people", format="json").json()["code"] == "unauthorized"


def test_sign_in_sets_a_strict_httponly_expiring_signed_cookie(pages: Pages) -> None:
    form = pages.page("/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    response = pages.sign_in()
    assert (response.status_code, response.headers["location"]) == (303, "/people")
    cookie = response.headers["set-cookie"]
    for attribute in (
        "HttpOnly",
        "SameSite=strict",
        "Path=/",
        f"Max-Age={int(pages.settings.session_hours * 3600)}",
    ):
        assert attribute.lower() in cookie.lower(), f"{attribute} missing from {cookie}"
    assert "secure" not in cookie.lower()  # plain http here; https requests get Secure
    assert pages.page("/people").status_code == 200
    # The admin token signs in too.
    pages.http.cookies.clear()
    assert pages.sign_in(pages.settings.admin_token).status_code == 303
    assert pages.page("/people").status_code == 200


def test_a_wrong_token_is_refused_with_the_form_again(pages: Pages) -> None:
    response = pages.sign_in("wrong")
    assert response.status_code == 401 and "That token is not valid" in response.text
    assert COOKIE not in pages.http.cookies
    assert pages.sign_in(pages.settings.write_keys[0]).status_code == 401, "a write key is not a token"


def test_forged_tampered_or_other_secret_cookies_are_no_session(pages: Pages) -> None:
    pages.sign_in()
    value = pages.http.cookies[COOKIE]
    payload, signature = value.split(".")
    for forged in (
        f"{payload}.{signature[:-2]}xx",
        f"{payload[:-2]}xx.{signature}",
        "garbage",
        "a.b.c",
        "x" * 5000,
    ):
        pages.http.cookies.clear()
        pages.http.cookies.set(COOKIE, forged)
        assert pages.page("/people").status_code == 303, forged[:40]


def test_sign_out_needs_the_csrf_token_and_this_origin(pages: Pages) -> None:
    pages.sign_in()
    token = csrf_of(pages.page("/people").text)
    refused = pages.http.post("/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403 and pages.page("/people").status_code == 200
    cross = pages.http.post("/logout", data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and pages.page("/people").status_code == 200
    done = pages.http.post("/logout", data={"csrf": token}, headers={"Origin": "http://testserver"})
    assert (done.status_code, done.headers["location"]) == (303, "/login")
    assert 'feedhouse_session=""' in done.headers["set-cookie"] or "Max-Age=0" in done.headers["set-cookie"]
    assert pages.page("/people").status_code == 303


def test_sign_in_refuses_other_origins_oversized_forms_and_open_redirects(pages: Pages) -> None:
    token = pages.settings.read_token
    cross = pages.http.post("/login", data={"token": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and COOKIE not in pages.http.cookies
    assert pages.http.post("/login", data={"token": "x" * 10_000}).status_code == 413
    for target in ("https://evil.example/", "//evil.example", "/\\evil.example"):
        response = pages.http.post("/login", data={"token": token, "next": target})
        assert response.headers["location"] == "/people", target
    assert (
        pages.http.post("/login", data={"token": token, "next": "/feed?x=1"}).headers["location"]
        == "/feed?x=1"
    )


def test_every_page_has_the_security_headers(pages: Pages) -> None:
    pages.send(*customers())
    login = pages.page("/login")
    pages.sign_in()
    for path in [*PAGES, "/login"]:
        response = login if path == "/login" else pages.page(path)
        assert response.status_code == 200, (path, response.status_code)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        # No inline script or style, no inline event handler: only /static files.
        assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", response.text), path
        assert not re.search(r"\son[a-z]+=", response.text), path
        assert "style=" not in response.text, path
    assert pages.page("/static/app.js").status_code == 200
    assert pages.page("/static/app.css").headers["content-type"].startswith("text/css")


def test_people_lists_everyone_newest_first_and_pages_by_keyset(pages: Pages) -> None:
    pages.send(
        *customers(), *(call("track", f"p{i}", 10 * 86400 + i, userId=f"u{i}", event="E") for i in range(5))
    )
    pages.sign_in()
    listed = pages.page("/people", format="json").json()
    assert [p["id"] for p in listed["profiles"]] == ["u4", "u3", "u2", "u1", "u0", "grace", "ada"]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"format": "json", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = pages.page("/people", **params).json()
        seen += [p["id"] for p in page["profiles"]]
        cursor = page["next"]
        if not cursor:
            break
    assert seen == [p["id"] for p in listed["profiles"]], "pages repeat or skip"
    table = pages.page("/people").text.split("<tbody>")[1]
    assert table.index("Grace Hopper") < table.index("Ada Lovelace")


def test_people_search_by_email_name_id_and_trait_and_filters(pages: Pages) -> None:
    pages.send(*customers())
    pages.sign_in()

    def ids(**params: str) -> list[str]:
        return [p["id"] for p in pages.page("/people", format="json", **params).json()["profiles"]]

    assert ids(q="ada@example.com") == ["ada"]
    assert ids(q="Grace Hopper") == ["grace"]
    assert ids(q="plan=pro") == ["ada"]
    assert ids(q="plan = free") == ["grace"]
    assert ids(group="acme") == ["grace", "ada"]
    assert ids(audience="vip_customers") == ["ada"]
    assert ids(q="plan=pro", group="acme") == ["ada"]
    assert ids(q="nobody@example.com") == []
    # Any id opens its person (the anonymous id of Ada's phone included).
    for identifier in ("ada-phone", "ada"):
        response = pages.page("/people", q=identifier)
        assert (response.status_code, response.headers["location"]) == (303, f"/people/{identifier}")
    # A userId that looks like an email (and is nobody's email trait) opens its person too.
    pages.send(call("track", "mail-1", 50, userId="support@shop.example", event="Ticket Opened"))
    response = pages.page("/people", q="support@shop.example")
    assert (response.status_code, response.headers["location"]) == (303, "/people/support%40shop.example")
    assert pages.page("/people", q="plan=pro", group="", audience="").status_code == 200  # empty = no filter
    assert pages.page("/people", bogus="1").status_code == 400
    assert pages.page("/people", cursor="not-a-cursor").status_code == 400


def test_people_walk_by_last_seen_for_common_values(pages: Pages, monkeypatch: pytest.MonkeyPatch) -> None:
    from feedhouse.app.views import people

    pages.send(
        *customers(),
        *(call("identify", f"x{i}", 5 * 86400 + i, userId=f"x{i}", traits={"plan": "pro"}) for i in range(6)),
    )
    pages.sign_in()
    monkeypatch.setattr(people, "SELECTIVE", 2)  # every filter now takes the walk
    found: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {
            "format": "json",
            "q": "plan=pro",
            "limit": 2,
            **({"cursor": cursor} if cursor else {}),
        }
        page = pages.page("/people", **params).json()
        assert page["total"] is None
        found += [p["id"] for p in page["profiles"]]
        cursor = page["next"]
        if not cursor:
            break
    assert found == ["x5", "x4", "x3", "x2", "x1", "x0", "ada"]


def test_the_person_page_in_html_and_json(pages: Pages) -> None:
    pages.send(*customers())
    pages.sign_in()
    html = pages.page("/people/ada-phone").text
    for text in (
        "Ada Lovelace",
        "ada@example.com",
        "+44 20 7946 0000",
        'href="/groups/acme"',
        "Acme Corp",
        "vip_customers",
    ):
        assert text in html, text
    assert "Product Viewed" in html and "Viewed Pricing" not in html  # page events hidden
    assert "Viewed Pricing" in pages.page("/people/ada-phone", hidden="true").text
    body = pages.page("/people/ada-phone", format="json").json()
    assert body["id"] == "ada" and body["anonymousIds"] == ["ada-phone"]
    assert body["traitTimes"]["email"] == "2026-11-03T09:00:00.000000Z"
    assert [e["messageId"] for e in body["timeline"]["events"]] == [
        "ada-7",
        "ada-6",
        "ada-5",
        "ada-4",
        "ada-3",
    ]
    assert pages.page("/people/nobody").status_code == 404
    assert "Not found" in pages.page("/people/nobody").text


def test_timeline_filters_paging_and_jump_to_a_date(pages: Pages) -> None:
    pages.send(*customers())
    pages.sign_in()

    def shown(**params: str) -> list[str]:
        body = pages.page("/people/ada", format="json", **params).json()
        return [e["messageId"] for e in body["timeline"]["events"]]

    assert shown(type="track") == ["ada-6", "ada-3"]
    assert shown(type="page") == ["ada-2", "ada-1"]  # asking for pages shows them
    assert shown(event="Order Completed") == ["ada-6"]
    assert shown(date="2026-11-03", hidden="true") == ["ada-5", "ada-4", "ada-3", "ada-2", "ada-1"]
    assert shown(date="2026-11-02", hidden="true") == ["ada-3", "ada-2", "ada-1"]
    first = pages.page("/people/ada", format="json", limit="2", hidden="true").json()["timeline"]
    fragment = pages.page("/people/ada", fragment="1", limit="2", hidden="true", cursor=first["next"])
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert re.findall(r'data-message-id="([^"]+)"', fragment.text) == ["ada-5", "ada-4"]
    assert "data-more" in fragment.text
    assert pages.page("/people/ada", type="nonsense").status_code == 400
    assert pages.page("/people/ada", date="not a date").status_code == 400


def test_the_feed_group_and_audience_pages(pages: Pages) -> None:
    pages.send(*customers())
    pages.sign_in()
    feed = pages.page("/feed", format="json").json()
    assert [(e["messageId"], e["profileId"]) for e in feed["events"]][:3] == [
        ("grace-3", "grace"),
        ("grace-2", "grace"),
        ("grace-1", "grace"),
    ]
    html = pages.page("/feed").text
    assert 'data-poll="/feed?fragment=1"' in html and 'href="/people/grace"' in html
    group = pages.page("/groups/acme", format="json").json()
    assert (group["traits"], group["memberCount"], [m["id"] for m in group["members"]]) == (
        {"name": "Acme Corp", "seats": 40},
        2,
        ["ada", "grace"],
    )
    assert pages.page("/groups/nowhere").status_code == 404
    assert pages.page("/audiences", format="json").json() == {
        "audiences": [{"key": "vip_customers", "size": 1, "computedBy": "engage"}],
        "traits": [],
    }
    audience = pages.page("/audiences/vip_customers", format="json").json()
    assert (audience["size"], [m["id"] for m in audience["members"]]) == (1, ["ada"])
    assert audience["history"][-1]["size"] == 1 and len(audience["history"]) == 90
    assert pages.page("/audiences/nothing").status_code == 404
    assert "<svg" in pages.page("/audiences/vip_customers").text


def test_hostile_values_are_escaped_everywhere(pages: Pages) -> None:
    pages.send(*hostile_calls())
    pages.sign_in()
    people = pages.page("/people", format="json").json()
    (profile,) = people["profiles"]
    targets = [
        "/people",
        f"/people/{quote(profile['id'], safe='')}?hidden=true",
        "/feed?hidden=true",
        f"/groups/{quote(profile['groupId'], safe='')}",
        "/audiences",
    ]
    for path in targets:
        response = pages.page(path)
        assert response.status_code == 200, path
        assert "<img src=x" not in response.text and "<svg onload" not in response.text, path
        assert "</script><script>" not in response.text, path
        assert 'src="javascript' not in response.text, path
    assert "&lt;img src=x onerror=" in pages.page(targets[1]).text
