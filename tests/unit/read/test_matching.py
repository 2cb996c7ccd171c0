"""Search filters judged on a profile's merged state (feedhouse.read.matching), pure."""

from __future__ import annotations

import pytest

from feedhouse.read.matching import matches, trait_text
from feedhouse.read.model import merge_states
from feedhouse.read.queries.search import ProfileQuery
from tests.unit.read.test_model import state


@pytest.mark.parametrize(
    ("value", "text"),
    [("pro", "pro"), (41, "41"), (2.5, "2.5"), (True, "true"), (False, "false"), ("", ""), ("41", "41")],
)
def test_trait_values_are_compared_as_the_lookup_table_writes_them(value: object, text: str) -> None:
    assert trait_text(value) == text


def test_every_filter_must_hold_on_the_merged_state() -> None:
    merged = merge_states(
        [
            state("anon", {"plan": "free", "seats": 3}, {"plan": 1, "seats": 9}, group_id="g1", group_time=5),
            state(
                "ann",
                {"plan": "pro"},
                {"plan": 20},
                audiences={"vip": {"member": True, "time": 7}, "churned": {"member": False, "time": 8}},
            ),
        ]
    )
    assert matches(ProfileQuery(traits=(("plan", "pro"), ("seats", "3"))), merged)
    # The anonymous id's older plan lost the merge: the profile is not "free" any more.
    assert not matches(ProfileQuery(traits=(("plan", "free"),)), merged)
    assert not matches(ProfileQuery(traits=(("email", "pro"),)), merged)
    assert matches(ProfileQuery(group="g1", audience="vip"), merged)
    assert not matches(ProfileQuery(group="g2"), merged)
    assert not matches(ProfileQuery(audience="churned"), merged)  # an exited member
    assert not matches(ProfileQuery(audience="never"), merged)


def test_an_audience_filter_passes_a_member_of_feedhouses_audience_of_that_key() -> None:
    merged = merge_states([state("ann", {"plan": "pro"}, {"plan": 1}, group_id="g1", group_time=5)])
    assert not matches(ProfileQuery(audience="buyers"), merged)
    assert matches(ProfileQuery(audience="buyers"), merged, computed_member=True)
    # The other filters still hold.
    assert matches(ProfileQuery(traits=(("plan", "pro"),), group="g1", audience="buyers"), merged, True)
    assert not matches(ProfileQuery(group="g2", audience="buyers"), merged, computed_member=True)
    assert not matches(ProfileQuery(traits=(("plan", "free"),), audience="buyers"), merged, True)
