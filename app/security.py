"""What keeps hostile data inert and other sites out: response headers and request checks.

* **Content-Security-Policy**: scripts and styles only from this origin (``/static``), no
  inline script or style, no inline event handlers, no plugins, no framing, forms post only
  here. Everything the pages show comes from the internet (event names, properties, traits,
  ids): Jinja2 escapes it, and even an escaping mistake could not run script under this policy.
  Images may also come from ``https:`` (a customer's ``avatar`` trait; anything else is shown
  as initials).
* **CSRF**: state-changing requests (POST) must come from this origin (``Origin`` header,
  else ``Referer``) *and*, once signed in, carry the session's CSRF token; the session cookie
  is also SameSite=Strict.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show personal data
}


def harden(response: Response) -> Response:
    """``response`` with the app's security headers."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def same_origin(request: Request) -> bool:
    """True when the browser says the request comes from a page of this origin.

    Browsers send ``Origin`` on every cross-origin POST (and on same-origin ones in practice);
    without it, ``Referer`` decides; a request with neither (a non-browser client) passes, since
    no browser can be made to send one without them.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    parsed = urlsplit(source)
    here = request.url
    default = {"http": 80, "https": 443}
    return (
        parsed.scheme == here.scheme
        and parsed.hostname == here.hostname
        and (parsed.port or default.get(parsed.scheme)) == (here.port or default.get(here.scheme))
    )


def csrf_matches(expected: str, sent: object) -> bool:
    return isinstance(sent, str) and bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())
