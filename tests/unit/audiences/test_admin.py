"""The admin API refuses anyone without the admin token, before touching anything."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from feedhouse.settings import Settings

ROUTES = [
    ("POST", "/v1/traits"),
    ("GET", "/v1/traits"),
    ("POST", "/v1/audiences"),
    ("GET", "/v1/traits/orders_30d"),
    ("PUT", "/v1/traits/orders_30d"),
    ("DELETE", "/v1/traits/orders_30d"),
    ("GET", "/v1/audiences/repeat_buyers"),
    ("PUT", "/v1/audiences/repeat_buyers"),
    ("DELETE", "/v1/audiences/repeat_buyers"),
    ("POST", "/v1/destinations"),
    ("GET", "/v1/destinations"),
    ("GET", "/v1/destinations/hook"),
    ("DELETE", "/v1/destinations/hook"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_admin_route_needs_the_admin_token(
    client: TestClient, unit_settings: Settings, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": f"Bearer {unit_settings.read_token}"},  # the read token never administers
        {"Authorization": "Bearer wk"},  # nor does a write key
        {"Authorization": "Basic d2s6"},
    ):
        response = client.request(method, path, headers=headers, json={"key": "x"})
        assert response.status_code == 401, (method, path, headers)
        assert response.json()["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="feedhouse-admin"'
