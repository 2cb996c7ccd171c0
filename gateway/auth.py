"""Write-key authentication for ingestion (Segment's scheme) and the API keys of /v1/webhook.

Segment clients send the write key as the user name of HTTP Basic auth with an empty password,
or as ``writeKey`` in the JSON body (analytics.js). Keys are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from starlette.requests import Request

from feedhouse.auth import KeyRing
from feedhouse.http import HttpError

__all__ = ["KeyRing", "basic_user", "unauthorized", "verify_signature"]


def basic_user(request: Request) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header; None when there is none."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        raise HttpError(
            401, "invalid_authorization", "Authorization must be HTTP Basic with the write key as user"
        )
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise HttpError(
            401, "invalid_authorization", "Authorization header is not valid Basic credentials"
        ) from None
    user, _, password = decoded.partition(":")
    # Some clients put the key in the password slot; Segment accepts the user name only,
    # but taking whichever is non-empty costs nothing and helps hand-written integrations.
    return user or password or None


def unauthorized(
    message: str = "a valid write key is required (HTTP Basic user name or writeKey)",
) -> HttpError:
    return HttpError(401, "unauthorized", message, {"WWW-Authenticate": 'Basic realm="feedhouse"'})


def verify_signature(secret: str, body: bytes, signature: str | None) -> bool:
    """Segment's Webhooks signature: ``X-Signature`` = hex HMAC-SHA1 of the raw body."""
    if not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())
