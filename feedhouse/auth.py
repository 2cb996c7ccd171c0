"""Who may do what: write keys ingest, the read token reads, the admin token administers.

Three separate secrets (``FEEDHOUSE_WRITE_KEYS``, ``FEEDHOUSE_READ_TOKEN``,
``FEEDHOUSE_ADMIN_TOKEN``), each compared in constant time. The admin token also reads
(an operator can do everything a support agent can); the read token never administers, and a
write key is never a token. Routes call :meth:`Tokens.require` with the scope they need.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from starlette.requests import Request

from feedhouse.http import HttpError
from feedhouse.settings import Settings

READ = "read"
ADMIN = "admin"


class KeyRing:
    """A set of accepted secrets, checked without leaking which prefix matched."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [hashlib.sha256(key.encode()).digest() for key in keys if key]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, candidate: str | None) -> bool:
        if not candidate:
            return False
        digest = hashlib.sha256(candidate.encode()).digest()
        # Compare against every key so timing does not reveal which one (if any) matched.
        found = False
        for known in self._digests:
            found |= hmac.compare_digest(digest, known)
        return found


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Tokens:
    """The read and admin tokens of a process, by scope."""

    def __init__(self, settings: Settings) -> None:
        self.admin = KeyRing([settings.admin_token])
        self.read = KeyRing([settings.read_token, settings.admin_token])

    def scope_of(self, token: str | None) -> str | None:
        """``admin``, ``read`` or None for ``token``."""
        if self.admin.accepts(token):
            return ADMIN
        if self.read.accepts(token):
            return READ
        return None

    def allows(self, token: str | None, scope: str) -> bool:
        granted = self.scope_of(token)
        return granted == ADMIN or (granted == READ and scope == READ)

    def require(self, request: Request, scope: str, token: str | None = None) -> None:
        """401 unless the request's bearer token (or ``token``) grants ``scope``."""
        if not self.allows(token if token is not None else bearer_token(request), scope):
            raise HttpError(
                401,
                "unauthorized",
                f"this route needs Authorization: Bearer <{scope} token>",
                {"WWW-Authenticate": f'Bearer realm="feedhouse-{scope}"'},
            )
