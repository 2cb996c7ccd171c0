"""Destination validation and how secrets are shown."""

from __future__ import annotations

import pytest

from feedhouse.audiences.definitions import DefinitionError
from feedhouse.audiences.destinations import masked, parse_destination


def test_segment_destinations_default_to_segment_itself() -> None:
    spec = parse_destination(
        {"key": "segment-prod", "type": "segment", "writeKey": "abc", "only": ["vip", "vip"]}
    )
    assert spec.config == {"endpoint": "https://api.segment.io", "writeKey": "abc"}
    assert spec.only == ("vip",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"key": "x", "type": "kafka"}, "type: must be 'segment' or 'webhook'"),
        ({"key": "X Y", "type": "webhook", "url": "https://h.example"}, "key: must be lowercase"),
        ({"key": "x", "type": "segment"}, "writeKey: must be a non-empty string"),
        (
            {"key": "x", "type": "webhook", "url": "ftp://h.example"},
            "url: must be an http(s) URL with a host",
        ),
        ({"key": "x", "type": "webhook", "url": "https://"}, "url: must be an http(s) URL with a host"),
        (
            {"key": "x", "type": "webhook", "url": "https://h.example", "writeKey": "k"},
            "writeKey: unknown field",
        ),
        (
            {"key": "x", "type": "webhook", "url": "https://h.example", "only": ["Bad Key"]},
            "only[0]: must be snake",
        ),
    ],
)
def test_refusals_name_the_field(body: dict[str, object], message: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_destination(body)
    assert str(caught.value).startswith(message)


def test_secrets_are_never_shown_whole() -> None:
    assert masked({"writeKey": "short"}) == {"writeKey": "****"}
    assert masked({"url": "u", "secret": "0123456789abcdefWXYZ"}) == {"url": "u", "secret": "...WXYZ"}
    assert masked({"url": "u", "secret": ""}) == {"url": "u", "secret": ""}
