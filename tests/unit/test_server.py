"""The server composes the app beside ingestion and the read API (no ClickHouse needed here)."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_the_app_is_served_at_the_root_of_the_gateway(client: TestClient) -> None:
    login = client.get("/login")
    assert login.status_code == 200 and 'name="token"' in login.text
    assert "script-src 'self'" in login.headers["content-security-policy"]
    home = client.get("/", follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, "/login?next=%2F")
    assert client.get("/static/app.js").status_code == 200
    # Ingestion and health answer as before, without the pages' headers.
    health = client.get("/healthz")
    assert health.status_code == 200 and "content-security-policy" not in health.headers
