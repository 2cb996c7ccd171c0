"""Session cookies: signed, expiring, bound to the token that made them."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request

from feedhouse import settings as settings_module
from feedhouse.app.session import COOKIE, Sessions
from feedhouse.settings import Settings


def request_with(cookie: str | None) -> Request:
    headers = [(b"cookie", f"{COOKIE}={cookie}".encode())] if cookie is not None else []
    return Request({"type": "http", "headers": headers, "method": "GET", "path": "/", "query_string": b""})


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sessions(settings: Settings | None = None, clock: Clock | None = None) -> Sessions:
    return Sessions(settings or settings_module.load({}), clock or Clock())


def test_a_token_signs_in_with_its_scope_and_a_csrf_token() -> None:
    current = settings_module.load({})
    issued = sessions(current).sign_in(current.read_token)
    assert issued is not None
    value, session = issued
    assert session.scope == "read" and len(session.csrf) >= 24
    assert sessions(current).read(request_with(value)) == session
    admin = sessions(current).sign_in(current.admin_token)
    assert admin is not None and admin[1].scope == "admin"
    assert sessions(current).sign_in("wrong") is None
    assert sessions(current).sign_in(current.write_keys[0]) is None


def test_a_session_expires() -> None:
    clock = Clock()
    current = settings_module.load({}, session_hours=1.0)
    issued = sessions(current, clock).sign_in(current.read_token)
    assert issued is not None
    clock.now += 3599
    assert sessions(current, clock).read(request_with(issued[0])) is not None
    clock.now += 2
    assert sessions(current, clock).read(request_with(issued[0])) is None


def test_tampered_or_foreign_cookies_are_refused() -> None:
    current = settings_module.load({})
    issued = sessions(current).sign_in(current.read_token)
    assert issued is not None
    value = issued[0]
    payload, signature = value.split(".")
    other_secret = dataclasses.replace(current, session_secret="another secret")
    for forged in (
        None,
        "",
        "no-dot",
        f"{payload}.{signature[::-1]}",
        f"{payload}x.{signature}",
        f"{value}.extra",
        "x" * 2000,
    ):
        assert sessions(current).read(request_with(forged)) is None, forged
    assert sessions(other_secret).read(request_with(value)) is None


def test_rotating_the_token_signs_its_sessions_out() -> None:
    current = settings_module.load({}, session_secret="fixed")
    issued = sessions(current).sign_in(current.read_token)
    assert issued is not None
    rotated = dataclasses.replace(current, read_token="a-new-read-token")
    assert sessions(rotated).read(request_with(issued[0])) is None
    # The derived secret follows the admin token: rotating it signs everyone out.
    derived = settings_module.load({})
    assert (
        derived.effective_session_secret
        != dataclasses.replace(derived, admin_token="x").effective_session_secret
    )
