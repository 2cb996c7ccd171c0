"""Regulation requests: what is accepted, and a 400 naming the field for the rest."""

from __future__ import annotations

from typing import Any

import pytest

from feedhouse.privacy.deletions import dropped
from feedhouse.privacy.regulations import MAX_SUBJECTS, InvalidRegulation, Regulation, parse_request


def test_a_valid_request_becomes_an_initialized_regulation() -> None:
    regulation = parse_request(
        {"regulationType": "SUPPRESS_WITH_DELETE", "subjectType": "USER_ID", "subjectIds": ["a", "b", "a"]}, 7
    )
    assert regulation.status == "INITIALIZED" and regulation.created_at == 7
    assert regulation.subject_ids == ["a", "b"], "repeats count once"
    assert regulation.suppresses and regulation.deletes and not regulation.unsuppresses
    assert Regulation.from_json(regulation.to_json()) == regulation
    internal = parse_request({"regulationType": "DELETE_INTERNAL", "subjectIds": ["a"]}, 1)
    assert internal.deletes and not internal.suppresses and internal.subject_type == "USER_ID"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"regulationType": "ERASE", "subjectIds": ["a"]}, "regulationType"),
        ({"regulationType": "DELETE_ONLY", "subjectType": "EMAIL", "subjectIds": ["a"]}, "subjectType"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": []}, "subjectIds"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": "a"}, "subjectIds"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": ["a", 3]}, "subjectIds[1]"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": ["a", " "]}, "subjectIds[1]"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": ["x" * 1025]}, "subjectIds[0]"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": ["a"] * (MAX_SUBJECTS + 1)}, "subjectIds"),
        ({"regulationType": "DELETE_ONLY", "subjectIds": ["a"], "extra": 1}, "extra"),
    ],
)
def test_invalid_requests_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidRegulation) as raised:
        parse_request(body, 1)
    assert str(raised.value).startswith(f"{field}:"), str(raised.value)


def test_what_a_deletion_keeps_out() -> None:
    forever = {"regulation": "r", "at": 100, "forever": True}
    once = {"regulation": "r", "at": 100, "forever": False}
    assert dropped(forever, 500, 500), "SUPPRESS_WITH_DELETE: nothing comes back"
    assert dropped(once, 50, 50) and dropped(once, 500, 50), "a replay or a duplicate of an old event"
    assert dropped(once, 50, 500), "a late event from before the deletion"
    assert not dropped(once, 500, 500), "DELETE_ONLY: a genuinely new event starts a new profile"
    assert not dropped(None, 1, 1)
