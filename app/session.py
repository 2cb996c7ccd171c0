"""The app's sign-in: a signed, expiring session cookie, and the CSRF token that goes with it.

A cookie of our own rather than Starlette's ``SessionMiddleware``: the middleware would wrap
every route of the gateway (ingestion included, the hot path) to load a session nobody there
uses, and its cookie can only expire by age. This one is checked only by the app's pages, and
its signed payload carries

* ``s``: the scope signed in with (``read`` or ``admin``),
* ``e``: when it expires (epoch seconds; ``FEEDHOUSE_SESSION_HOURS``),
* ``t``: a fingerprint of the token used, so rotating the read or admin token signs out every
  session made with the old one,
* ``c``: the CSRF token state-changing forms must send back (synchronizer token).

Signed with HMAC-SHA256 under ``settings.effective_session_secret``; compared in constant time.
The cookie is HttpOnly, SameSite=Strict, Path=/, and Secure when the request came over HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from starlette.requests import Request
from starlette.responses import Response

from feedhouse.auth import ADMIN, READ, Tokens
from feedhouse.settings import Settings

COOKIE = "feedhouse_session"
MAX_COOKIE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class Session:
    scope: str
    expires: int
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks session cookies for one process's settings."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.tokens = Tokens(settings)
        self.secret = settings.effective_session_secret
        self.lifetime = int(settings.session_hours * 3600)
        self.clock = clock
        self._fingerprints = {
            READ: self._fingerprint(settings.read_token),
            ADMIN: self._fingerprint(settings.admin_token),
        }

    def _fingerprint(self, token: str) -> str:
        return _b64(hmac.new(self.secret, b"token:" + token.encode(), hashlib.sha256).digest()[:12])

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self.secret, b"session:" + payload, hashlib.sha256).digest())

    def sign_in(self, token: str) -> tuple[str, Session] | None:
        """A cookie value and its session for ``token``, or None when the token grants nothing."""
        scope = self.tokens.scope_of(token)
        if scope is None:
            return None
        session = Session(scope, int(self.clock()) + self.lifetime, secrets.token_urlsafe(24))
        payload = orjson.dumps(
            {"s": scope, "e": session.expires, "t": self._fingerprints[scope], "c": session.csrf}
        )
        return f"{_b64(payload)}.{self._sign(payload)}", session

    def read(self, request: Request) -> Session | None:
        """The request's valid session, or None (missing, forged, expired, or from an old token)."""
        value = request.cookies.get(COOKIE, "")
        if not value or len(value) > MAX_COOKIE_CHARS or value.count(".") != 1:
            return None
        encoded, signature = value.split(".")
        try:
            payload = _unb64(encoded)
        except ValueError:
            return None
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        scope, expires, fingerprint, csrf = (data.get(key) for key in ("s", "e", "t", "c"))
        if scope not in self._fingerprints or not isinstance(expires, int) or not isinstance(csrf, str):
            return None
        if expires <= self.clock() or not hmac.compare_digest(str(fingerprint), self._fingerprints[scope]):
            return None
        return Session(scope, expires, csrf)

    def set_cookie(self, response: Response, value: str, request: Request) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.lifetime,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
