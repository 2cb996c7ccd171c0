"""The Profile API's request parsing and error mapping (the routes run on chDB in integration tests)."""

from __future__ import annotations

import base64

import orjson
import pytest
from starlette.requests import Request

from feedhouse.http import HttpError
from feedhouse.read.profile_api import ProfileError, _segment_error, basic_token, parse_identifier


def with_auth(value: str) -> Request:
    return Request({"type": "http", "headers": [(b"authorization", value.encode())], "method": "GET"})


def test_the_basic_user_name_is_the_token() -> None:
    encoded = base64.b64encode(b"secret-token:").decode()
    assert basic_token(with_auth(f"Basic {encoded}")) == "secret-token"
    assert basic_token(with_auth("basic " + base64.b64encode(b"tok:pw").decode())) == "tok"
    for refused in (
        "Bearer secret-token",
        "Basic",
        "Basic !!!",
        "Basic " + base64.b64encode(b":pw").decode(),
    ):
        assert basic_token(with_auth(refused)) is None, refused


def test_identifiers_are_type_and_value() -> None:
    assert parse_identifier("user_id:u-1") == ("user_id", "u-1")
    assert parse_identifier("email:a:b@example.com") == ("email", "a:b@example.com")
    assert parse_identifier("anonymous_id:a/b") == ("anonymous_id", "a/b")
    for refused in ("u-1", "phone:1", "user_id:", ":x", "user_id:" + "x" * 2000):
        with pytest.raises(ProfileError) as caught:
            parse_identifier(refused)
        assert (caught.value.status, caught.value.code) == (400, "validation_error"), refused


def test_feedhouse_errors_take_segments_shape() -> None:
    error = _segment_error(HttpError(400, "invalid_parameter", "limit: must be an integer from 1 to 100"))
    assert (error.status, error.code, error.message) == (
        400,
        "validation_error",
        "The parameter `limit` must be an integer from 1 to 100",
    )
    body = orjson.loads(error.response().body)
    assert body == {"error": {"code": "validation_error", "message": error.message}}
