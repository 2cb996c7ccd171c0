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
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from feedhouse.audiences.definitions import AUDIENCE

CAUSES = ("events", "window", "definition", "deleted")


class Current(NamedTuple):
    """The last recorded state of (definition, profile). A tuple: a pass reads thousands."""

    member: bool
    value: str
    change_index: int
    entered_at: int | None
    exited_at: int | None
    user_id: str  # who the last change's messages named
    anonymous_id: str

    @classmethod
    def of(cls, row: Any) -> Current:
        """From the tuple ``audiences.queries.CURRENT_COLUMNS`` selects (already in this order)."""
        return cls._make(row)

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
    digest = hashlib.blake2b(f"{computation_id}\x1f{profile_id}\x1f{change_index}".encode(), digest_size=20)
    return f"fh-{digest.hexdigest()}"


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


def current_after(change: Change) -> Current:
    """What :class:`Current` reads back once ``change`` is recorded."""
    return Current(
        change.member,
        change.value,
        change.change_index,
        change.entered_at,
        change.exited_at,
        change.user_id,
        change.anonymous_id,
    )


class CurrentCache:
    """The last recorded state of every definition for recently evaluated profiles.

    The evaluator is the change log's only writer, so what it read or wrote stays true until it
    writes again: profiles evaluated pass after pass (a heavy user, a busy session) are diffed
    without reading the current-value table again. Kept per profile (one lookup per profile and
    pass, not one per definition); ``None`` caches "nothing recorded". Bounded by profiles (the
    least recently written go first); cleared whenever a write may or may not have landed.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._profiles: dict[str, dict[str, Current | None]] = {}

    def __len__(self) -> int:
        return len(self._profiles)

    def missing(self, profiles: Iterable[str], computations: Iterable[str]) -> list[str]:
        """Profiles without a cached state for one of ``computations``."""
        wanted = list(computations)
        cached = self._profiles
        return [
            p for p in profiles if (states := cached.get(p)) is None or any(c not in states for c in wanted)
        ]

    def states(self, profile: str) -> dict[str, Current | None]:
        """computation id -> the cached state of ``profile`` (empty when nothing is cached)."""
        return self._profiles.get(profile) or {}

    def replace(self, profile: str, states: dict[str, Current | None]) -> None:
        """``profile``'s states, as just read."""
        self._profiles.pop(profile, None)
        self._profiles[profile] = states  # to the end: the most recently written
        self._bound()

    def record(self, changes: Iterable[Change]) -> None:
        """What was just written, for the profiles cached (the others are read when needed: a
        backfill's hundreds of thousands of entries do not push the busy profiles out)."""
        profiles = self._profiles
        for change in changes:
            states = profiles.get(change.profile_id)
            if states is not None:
                states[change.computation_id] = current_after(change)

    def _bound(self) -> None:
        profiles = self._profiles
        if len(profiles) > self.limit:
            for old in list(itertools.islice(profiles, max(1, len(profiles) // 10))):  # the oldest tenth
                del profiles[old]

    def clear(self) -> None:
        self._profiles.clear()
