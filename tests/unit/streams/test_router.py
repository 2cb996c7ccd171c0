"""Which events reach the identity agents, and as what."""

from __future__ import annotations

from typing import Any

from feedhouse.ids import DEFAULT_PLACEHOLDER_IDS
from feedhouse.streams.router import COMMANDS, GRAPH, PairCache, commands_for

PLACEHOLDERS = frozenset(DEFAULT_PLACEHOLDER_IDS)


def event(**fields: Any) -> dict[str, Any]:
    base = {
        "type": "track",
        "messageId": "m",
        "userId": None,
        "anonymousId": None,
        "groupId": None,
        "previousId": None,
        "traits": None,
        "context": None,
        "timestamp": 1,
    }
    return {**base, **fields}


def kinds(e: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c.topic, c.record["kind"], c.key) for c in commands_for(e, PLACEHOLDERS)]


def test_plain_tracks_imply_nothing() -> None:
    assert kinds(event(userId="u")) == []
    assert kinds(event(anonymousId="a")) == []


def test_event_with_both_ids_claims_the_device() -> None:
    assert kinds(event(userId="u", anonymousId="a")) == [(GRAPH, "claim", "a")]


def test_identify_group_alias() -> None:
    assert kinds(event(type="identify", userId="u", traits='{"x":1}')) == [(COMMANDS, "identify", "u")]
    assert kinds(event(type="identify", userId="u", traits="{}")) == []
    assert kinds(event(type="group", anonymousId="a", groupId="g", traits='{"n":1}')) == [
        (COMMANDS, "group", "a"),
        (COMMANDS, "group_traits", "g"),
    ]
    assert kinds(event(type="alias", previousId="p", userId="u")) == [(GRAPH, "alias", "p")]


def test_placeholders_never_link_or_merge() -> None:
    assert kinds(event(userId="undefined", anonymousId="a")) == []
    assert kinds(event(userId="u", anonymousId=" NULL ")) == []
    assert kinds(event(type="alias", previousId="anonymous", userId="u")) == []
    assert kinds(event(type="alias", previousId="p", userId="0")) == []
    # An identify whose userId is a placeholder still updates the anonymous profile.
    assert kinds(event(type="identify", userId="guest", anonymousId="a", traits='{"x":1}')) == [
        (COMMANDS, "identify", "a")
    ]


def test_engage_audience_is_recognised() -> None:
    context = '{"personas":{"computation_class":"audience","computation_key":"vip"}}'
    [command] = commands_for(
        event(type="identify", userId="u", traits='{"vip":true}', context=context), PLACEHOLDERS
    )
    assert command.record["audience"] == "vip"


def test_pair_cache_skips_repeats_but_not_earlier_occurrences() -> None:
    cache = PairCache(size=3)
    assert not cache.covers(("a", "u"), (10, "m1"))
    assert cache.covers(("a", "u"), (20, "m2"))  # a later repeat: nothing new for the graph
    assert not cache.covers(("a", "u"), (5, "m0"))  # a late-arriving older event: forwarded
    assert cache.covers(("a", "u"), (7, "m3"))


def test_pair_cache_remembers_across_a_generation() -> None:
    cache = PairCache(size=2)
    assert not cache.covers(("a", "u"), (1, "m"))
    assert not cache.covers(("b", "u"), (1, "m"))  # young generation full: it becomes the old one
    assert cache.covers(("a", "u"), (2, "m"))
