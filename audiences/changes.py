"""Changes: a profile's value of a definition compared with the last one recorded. Pure, no I/O.

A change is recorded only when the value differs (an audience: member or not; a computed trait:
its JSON text, ``''`` for none), so re-evaluating a profile whose value did not move records
nothing: a replayed batch, a restarted evaluator or an overlapping backfill changes nothing.

Each change of (definition, profile) is numbered (``change_index`` 1, 2, ...), and its
``messageId`` is derived from the definition's computation id, the profile and that number:
the same change always gets the same id, so a receiver that deduplicates by messageId
(Segment, another Feedhouse) sees each change once however often it is delivered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from feedhouse.audiences.definitions import AUDIENCE

CAUSES = ("events", "window", "definition", "deleted")


@dataclass(frozen=True, slots=True)
class Current:
    """The last recorded state of (definition, profile)."""

    member: bool
    value: str
    change_index: int
    entered_at: int | None
    exited_at: int | None
    user_id: str  # who the last change's messages named
    anonymous_id: str

    @classmethod
    def of(cls, row: Any) -> Current:
        """From the tuple ``audiences.queries.CURRENT_COLUMNS`` selects."""
        member, value, index, entered, exited, user_id, anonymous_id = row
        return cls(bool(member), str(value), int(index), entered, exited, str(user_id), str(anonymous_id))

    @property
    def present(self) -> bool:
        return self.member or self.value != ""


@dataclass(frozen=True, slots=True)
class Subject:
    """What is being computed: a definition as the log names it."""

    kind: str
    key: str
    computation_id: str


@dataclass(frozen=True, slots=True)
class Change:
    """One row of ``computed_changes`` (``seq`` is given when it is written)."""

    kind: str
    definition_key: str
    computation_id: str
    profile_id: str
    user_id: str
    anonymous_id: str
    member: bool
    value: str
    previous: str
    change_index: int
    entered_at: int | None
    exited_at: int | None
    cause: str
    changed_at: int
    message_id: str


def message_id(computation_id: str, profile_id: str, change_index: int) -> str:
    """The deterministic id of a change (its messages append ``.identify`` / ``.track``)."""
    digest = hashlib.sha256(f"{computation_id}\x1f{profile_id}\x1f{change_index}".encode()).hexdigest()
    return f"fh-{digest[:40]}"


def normalise(kind: str, value: object) -> tuple[bool, str]:
    """(member, value) of a computed output: audiences give 0/1, traits JSON text or None."""
    if kind == AUDIENCE:
        return bool(value), ""
    return False, "" if value is None else str(value)


def diff(
    subject: Subject,
    profile_id: str,
    identified: bool | None,
    new: object,
    current: Current | None,
    *,
    cause: str,
    now: int,
) -> Change | None:
    """The change from ``current`` to the computed output ``new`` (None: no difference).

    ``new`` is the query's output (audience 0/1, trait JSON text or None); None means the
    profile has no value (not a member). ``identified`` says whether the profile's canonical id
    is a userId (messages then carry ``userId``) or an anonymousId; None (a profile merged away,
    a deleted definition) names the profile as its last change did, so the exit reaches the
    same record downstream as the entry.
    """
    member, value = normalise(subject.kind, new)
    was_member = current.member if current else False
    was_value = current.value if current else ""
    if member == was_member and value == was_value:
        return None
    index = (current.change_index if current else 0) + 1
    entered = current.entered_at if current else None
    exited = current.exited_at if current else None
    if subject.kind == AUDIENCE:
        if member:
            entered = now
        else:
            exited = now
    if identified is None and current is not None and (current.user_id or current.anonymous_id):
        user_id, anonymous_id = current.user_id, current.anonymous_id
    elif identified:
        user_id, anonymous_id = profile_id, ""
    else:
        user_id, anonymous_id = "", profile_id
    return Change(
        kind=subject.kind,
        definition_key=subject.key,
        computation_id=subject.computation_id,
        profile_id=profile_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        member=member,
        value=value,
        previous=was_value,
        change_index=index,
        entered_at=entered,
        exited_at=exited,
        cause=cause,
        changed_at=now,
        message_id=message_id(subject.computation_id, profile_id, index),
    )
