"""People matching filters, verified on their merged state here, in Python.

A filter's lookup table (``id_state_by_trait|group|audience``; for an audience also the members
of Feedhouse's audience of that key) gives candidate ids; each candidate's profile is judged on
the merge of the current state of *all* its ids, by the same function the profile pages use
(:func:`feedhouse.read.model.merge_states`), so a search can never disagree with the profile it
lists; an audience filter passes a member of either system's audience of its key. A few short
queries (candidates, every id of their profiles, those ids' states from the key-value mirror,
Feedhouse memberships, their newest event times) instead of one query verifying in SQL: in chDB
the nested subqueries of that query cost more to analyse than the round trips
(docs/benchmarks.md, "The app and the Profile API").

For filters with many candidates (a common value such as ``plan=pro``, a large group) the people
list walks profiles by last seen and keeps those :func:`passing` accepts
(``feedhouse.read.queries.people.recent_profiles``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from feedhouse.read.model import MergedState, merge_states
from feedhouse.read.queries import audiences, people, profiles, search

# Candidates above which a filter is not "selective": verifying each one would cost more than
# walking people by last seen and testing each (a page of people is ~50-400 lookups).
SELECTIVE = 2000


def trait_text(value: Any) -> str:
    """A trait value as the lookup table and a search term write it: strings as they are,
    everything else as its JSON text (``41``, ``2.5``, ``true``)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def matches(query: search.ProfileQuery, merged: MergedState, computed_member: bool = False) -> bool:
    """Whether a profile passes every filter of ``query``: its merged state, and for the audience
    filter either Engage's audience in that state or Feedhouse's (``computed_member``: the profile
    is a member of Feedhouse's audience of that key, :func:`passing`)."""
    for key, value in query.traits:
        if key not in merged.traits or trait_text(merged.traits[key]) != value:
            return False
    if query.group and merged.group_id != query.group:
        return False
    if not query.audience or computed_member:
        return True
    return merged.audiences.get(query.audience, {}).get("member") is True


def passing(
    client: Client, query: search.ProfileQuery, members: Mapping[str, Sequence[str]]
) -> dict[str, MergedState]:
    """Those of ``members`` (profile -> its ids) that pass every filter of ``query``, with their
    merged states."""
    merged = merged_states(client, members)
    computed = audiences.computed_members_among(client, query.audience, sorted(members))
    return {profile: state for profile, state in merged.items() if matches(query, state, profile in computed)}


def merged_states(client: Client, members: Mapping[str, Sequence[str]]) -> dict[str, MergedState]:
    """profile -> the merge of its ids' current states, for ``members`` (profile -> its ids)."""
    every = sorted({identifier for ids in members.values() for identifier in ids})
    states = {state.id: state for state in profiles.id_states(client, every)}
    return {profile: merge_states(states[i] for i in ids if i in states) for profile, ids in members.items()}


@dataclass(frozen=True, slots=True)
class Match:
    """A profile that matched: its ids, merged state and the position of its newest event."""

    profile_id: str
    ids: tuple[str, ...]
    merged: MergedState
    position: people.Position  # (newest event time in epoch µs, 0 if never seen; the id)


def selective_matches(
    client: Client, query: search.ProfileQuery, most: int = SELECTIVE
) -> list[Match] | None:
    """Every profile matching ``query``, most recently seen first; None when the most selective
    filter has more than ``most`` candidate ids (walk people instead)."""
    candidates = search.candidate_ids(client, query, most + 1)
    if len(candidates) > most:
        return None
    if not candidates:
        return []
    members = profiles.members_of(client, candidates)
    wanted = passing(client, query, members)
    seen = people.last_seen(client, [i for profile in wanted for i in members[profile]])
    found = []
    for profile, merged in wanted.items():
        ids = members[profile]
        position = people.newest(ids, seen) or (0, profile)
        found.append(Match(profile, tuple(sorted(ids)), merged, position))
    return sorted(found, key=lambda match: match.position, reverse=True)
