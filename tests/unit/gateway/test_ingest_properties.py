"""Property: nothing a network client can send makes the gateway answer 500.

Hypothesis generates JSON values (as whole bodies, as events, inside batches) and raw bytes
(with and without gzip framing) against every ingestion route.
"""

from __future__ import annotations

import base64
import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

AUTH = {"Authorization": "Basic " + base64.b64encode(b"wk:").decode()}
ROUTES = [
    "/v1/identify",
    "/v1/track",
    "/v1/page",
    "/v1/screen",
    "/v1/group",
    "/v1/alias",
    "/v1/batch",
    "/v1/webhook",
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
segment_keys = st.sampled_from(
    [
        "type",
        "userId",
        "anonymousId",
        "event",
        "groupId",
        "previousId",
        "messageId",
        "timestamp",
        "sentAt",
        "properties",
        "traits",
        "context",
        "integrations",
        "writeKey",
        "name",
        "batch",
        "receivedAt",
    ]
)
# Events shaped like Segment calls, with arbitrary values in the known fields.
segment_like = st.dictionaries(
    segment_keys, json_values | st.sampled_from(["wk", "2026-01-01T00:00:00Z", "track"])
)
bodies = st.one_of(
    json_values, segment_like, st.builds(lambda items: {"batch": items}, st.lists(segment_like, max_size=5))
)

fuzz = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@fuzz
@given(route=st.sampled_from(ROUTES), body=bodies)
def test_json_values_never_500(client: TestClient, route: str, body: object) -> None:
    response = client.post(route, content=json.dumps(body), headers=AUTH)
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or response.json()["success"] is False


@fuzz
@given(route=st.sampled_from(ROUTES), raw=st.binary(max_size=300), zipped=st.booleans(), typed=st.booleans())
def test_bytes_never_500(client: TestClient, route: str, raw: bytes, zipped: bool, typed: bool) -> None:
    headers = dict(AUTH)
    if zipped:
        headers["Content-Encoding"] = "gzip"
        raw = gzip.compress(raw) if typed else raw
    elif typed:
        headers["Content-Type"] = "application/json"
    response = client.post(route, content=raw, headers=headers)
    assert response.status_code < 500, response.text


@fuzz
@given(
    header=st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in b"\r\n\x00")),
    route=st.sampled_from(ROUTES),
)
def test_authorization_headers_never_500(client: TestClient, header: bytes, route: str) -> None:
    response = client.post(route, json={"userId": "u", "event": "x"}, headers={"Authorization": header})
    assert response.status_code < 500, response.text
