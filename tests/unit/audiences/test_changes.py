"""Changes: recorded only when a value moves, numbered per (definition, profile), deterministic ids."""

from __future__ import annotations

from feedhouse.audiences.changes import Current, CurrentCache, Subject, diff, message_id

AUDIENCE = Subject("audience", "repeat_buyers", "aud_1")
TRAIT = Subject("trait", "orders_30d", "tra_1")


def current(member: bool = False, value: str = "", index: int = 1, user_id: str = "ada") -> Current:
    return Current(member, value, index, 10 if member else None, None, user_id, "")


def test_entering_an_audience_is_the_first_change() -> None:
    change = diff(AUDIENCE, "ada", True, 1, None, cause="events", now=100)
    assert change is not None
    assert (change.member, change.change_index, change.entered_at, change.exited_at) == (True, 1, 100, None)
    assert (change.user_id, change.anonymous_id) == ("ada", "")
    assert change.message_id == message_id("aud_1", "ada", 1)


def test_no_change_no_row() -> None:
    assert diff(AUDIENCE, "ada", True, 1, current(member=True), cause="events", now=100) is None
    assert diff(AUDIENCE, "ada", True, 0, None, cause="events", now=100) is None
    assert diff(TRAIT, "ada", True, "3", current(value="3"), cause="events", now=100) is None
    assert diff(TRAIT, "ada", True, None, None, cause="events", now=100) is None


def test_exits_continue_the_numbering_and_keep_the_entry_time() -> None:
    change = diff(AUDIENCE, "ada", True, 0, current(member=True, index=4), cause="window", now=200)
    assert change is not None
    assert (change.member, change.change_index, change.entered_at, change.exited_at) == (False, 5, 10, 200)
    assert change.cause == "window"


def test_trait_values_record_the_previous_value() -> None:
    change = diff(TRAIT, "dev-1", False, "4", current(value="3", index=2, user_id=""), cause="events", now=5)
    assert change is not None
    assert (change.value, change.previous, change.change_index) == ("4", "3", 3)
    assert (change.user_id, change.anonymous_id) == ("", "dev-1")
    gone = diff(TRAIT, "dev-1", False, None, current(value="4", index=3), cause="events", now=6)
    assert gone is not None and gone.value == "" and gone.previous == "4"


def test_a_profile_that_disappeared_exits_under_the_id_its_entry_used() -> None:
    # Merged away: the evaluator no longer knows whether its canonical id was a userId.
    change = diff(
        AUDIENCE, "anon-7", None, None, Current(True, "", 1, 5, None, "", "anon-7"), cause="events", now=9
    )
    assert change is not None and (change.user_id, change.anonymous_id) == ("", "anon-7")


def test_message_ids_are_deterministic_and_distinct() -> None:
    assert message_id("aud_1", "ada", 1) == message_id("aud_1", "ada", 1)
    ids = {message_id(c, p, i) for c in ("aud_1", "aud_2") for p in ("ada", "bob") for i in (1, 2)}
    assert len(ids) == 8
    assert all(len(i) < 100 for i in ids)  # Segment's messageId limit (the gateway checks it)


def test_the_cache_answers_for_what_it_read_or_wrote_and_forgets_the_oldest() -> None:
    cache = CurrentCache(limit=3)
    assert cache.missing(["ada"], ["aud_1"]) == ["ada"]
    cache.replace("ada", {"aud_1": None})  # read: nothing recorded
    change = diff(AUDIENCE, "bob", True, 1, None, cause="events", now=5)
    assert change is not None
    cache.record([change])  # bob is not cached: a write does not add him
    assert cache.missing(["bob"], ["aud_1"]) == ["bob"]
    cache.replace("bob", {"aud_1": None})
    cache.record([change])  # now it updates him
    assert cache.missing(["ada", "bob", "cy"], ["aud_1"]) == ["cy"]
    assert cache.missing(["ada"], ["aud_1", "aud_2"]) == ["ada"]  # a definition it has not read
    bob = cache.states("bob")["aud_1"]
    assert bob is not None and bob.member and bob.change_index == 1
    cache.replace("cy", {"aud_1": None})
    cache.replace("dee", {"aud_1": None})  # over the limit: the least recently written ("ada") goes
    assert cache.states("ada") == {} and len(cache) == 3
    cache.clear()
    assert len(cache) == 0
