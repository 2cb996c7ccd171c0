"""The template filters: what reaches a page is plain text, and only safe URLs become images."""

from __future__ import annotations

from types import SimpleNamespace

from feedhouse.app.templates import (
    ago,
    avatar_url,
    build_templates,
    clip,
    event_title,
    initials,
    iso_shown,
    urlpart,
)


def test_only_plain_https_avatars_are_shown() -> None:
    assert avatar_url("https://avatar.windsor.io/user-123") == "https://avatar.windsor.io/user-123"
    for refused in (
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:image/svg+xml,<svg onload=alert(1)>",
        "http://plain.example/a.png",
        "https://user:pass@host.example/a.png",
        "https://host.example/a b.png",
        "https://host.example/\u202ea.png",
        "https:///nohost",
        "https://" + "a" * 3000,
        42,
        None,
    ):
        assert avatar_url(refused) is None, refused


def test_initials_clip_and_relative_times() -> None:
    assert initials("Ada Lovelace") == "AL"
    assert initials("grace@example.com") == "GE"
    assert initials("<img src=x>") == "IS"
    assert initials("") == "?" and initials(None) == "?" and initials("1234") == "?"
    assert clip("x" * 10, 5) == "xxxx…" and clip("short") == "short" and clip({"a": 1}) == '{"a":1}'
    now = 1_000_000.0
    assert ago(int((now - 90) * 1e6), now) == "1 min ago"
    assert ago(int((now + 7200) * 1e6), now) == "in 2 h"
    assert ago(None) == "never"
    assert urlpart("a/b?c#d e") == "a%2Fb%3Fc%23d%20e"
    assert iso_shown("2026-11-04T09:00:05.000000Z") == "2026-11-04 09:00:05 UTC" and iso_shown(None) == ""


def test_event_titles() -> None:
    def row(**fields: str) -> SimpleNamespace:
        base = {
            "type": "track",
            "event": "",
            "name": "",
            "properties": "",
            "traits": "",
            "group_id": "",
            "previous_id": "",
            "user_id": "",
        }
        return SimpleNamespace(**{**base, **fields})

    assert event_title(row(event="Order Completed")) == "Order Completed"
    assert event_title(row(type="page", properties='{"path": "/pricing"}')) == "Viewed /pricing"
    assert event_title(row(type="screen", name="Home")) == "Viewed Home"
    assert event_title(row(type="identify", traits='{"plan": 1, "email": 2}')) == "Identified (email, plan)"
    assert event_title(row(type="group", group_id="acme")) == "Joined group acme"
    assert event_title(row(type="alias", previous_id="a", user_id="b")) == "Alias a → b"


def test_the_environment_escapes_everything() -> None:
    environment = build_templates().env
    assert environment.autoescape is True
    rendered = environment.from_string("{{ value }}|{{ value | clip }}|{{ value | display }}").render(
        value="<script>alert(1)</script>"
    )
    assert "<script>" not in rendered and rendered.count("&lt;script&gt;") == 3
