"""Security headers and the same-origin check of state-changing requests."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from feedhouse.app.security import CSP, csrf_matches, harden, same_origin


def request(headers: dict[str, str], host: str = "127.0.0.1:8088", scheme: str = "http") -> Request:
    raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request(
        {
            "type": "http",
            "headers": raw,
            "method": "POST",
            "path": "/logout",
            "scheme": scheme,
            "query_string": b"",
            "server": ("127.0.0.1", 8088),
        }
    )


def test_the_policy_allows_scripts_and_styles_from_this_origin_only() -> None:
    directives = dict(part.split(" ", 1) for part in CSP.split("; "))
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in CSP
    response = harden(Response("x"))
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_same_origin_requests_pass_and_others_do_not() -> None:
    assert same_origin(request({"Origin": "http://127.0.0.1:8088"}))
    assert same_origin(request({"Referer": "http://127.0.0.1:8088/people?q=x"}))
    assert same_origin(request({}))  # no browser omits both on a cross-site post
    assert same_origin(request({"Origin": "https://feedhouse.example"}, "feedhouse.example", "https"))
    for origin in ("https://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:8088", "null"):
        assert not same_origin(request({"Origin": origin})), origin
    assert not same_origin(request({"Referer": "https://evil.example/page"}))


def test_csrf_tokens_compare_exactly() -> None:
    assert csrf_matches("abc", "abc")
    assert not csrf_matches("abc", "abd") and not csrf_matches("abc", "") and not csrf_matches("abc", None)
