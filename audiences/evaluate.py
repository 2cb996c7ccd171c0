"""Running compiled programs: which profiles some ids concern, and their values. Reads only.

:func:`resolve_scope` turns the ids an incoming batch touched (events' person keys, ids whose
mapping or state changed) into the profiles to evaluate: each id's current profile, every
profile an id with a new mapping ever belonged to (the one it left must be evaluated too), and
the touched ids themselves as candidate profiles (an anonymous profile merged into a user's is
no longer a profile: it must lose its memberships). Alive candidates bring all their ids.

The work is that of the touched profiles, never of all profiles: the queries are key lookups
on ``id_mapping`` / ``id_mapping_by_profile`` / ``events`` (ordered by person key).

:func:`relevance` narrows it further. A profile in a pass only because of new events (no
identity change, no id moving in or out) can only see the outputs those events' kinds count
move: it is evaluated for those outputs, over the events of the kinds they read, and its other
outputs are left as recorded. With typical definitions a page view moves a last-page trait and
a page-path audience, not the order counts, so the profile's orders are not read again.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.audiences.compile import Kind, Program
from feedhouse.audiences.queries import (
    FORMER_OWNERS_SQL,
    IDENTIFIED_SQL,
    OWNERS_SQL,
    PROFILE_IDS_SQL,
    evaluation_sql,
)
from feedhouse.read.sql import rows

# Largest array bound into one lookup query (parameters travel in the request body: see
# feedhouse.clickhouse.client).
CHUNK = 10_000

# profile -> (identified, outputs); identified is None when not looked up (a pass).
Values = dict[str, tuple[bool | None, tuple[Any, ...]]]
EVERY_KIND = (1 << 64) - 1  # the scope mask of a profile evaluated whole


@dataclass(frozen=True, slots=True)
class Scope:
    """Profiles to evaluate and the ids that make them up."""

    candidates: tuple[str, ...]  # every profile whose values may have moved (alive or not)
    alive: tuple[str, ...]  # candidates that are profiles now (their canonical id maps to itself)
    ids: tuple[str, ...]  # every id of the alive profiles ...
    owners: tuple[str, ...]  # ... and the profile each belongs to
    owner_of: Mapping[str, str] = field(default_factory=dict)  # touched id -> its profile now
    former: frozenset[str] = frozenset()  # profiles a moved id belonged to


@dataclass(frozen=True, slots=True)
class Relevance:
    """Of some profiles of a scope, which outputs a pass evaluates (indices into the program's
    outputs) and the mask of the kinds of events it reads for them; profiles absent are
    evaluated whole."""

    outputs: Mapping[str, frozenset[int]] = field(default_factory=dict)
    masks: Mapping[str, int] = field(default_factory=dict)


def relevance(
    program: Program, scope: Scope, seen: Mapping[str, Iterable[Kind]], whole: Iterable[str]
) -> Relevance:
    """What ``seen`` (event-touched id -> the (type, event name) of its new events) can move.

    A profile is narrowed only if every touched id of it was touched by events alone (no id in
    ``whole``: identity changes, expiries) and no moved id left it; an output is evaluated when
    it reads a kind of those events, and the events read are the kinds those outputs read.
    """
    whole_profiles = {scope.owner_of.get(identifier, identifier) for identifier in whole} | scope.former
    alive = set(scope.alive)
    seen_kinds: dict[str, int] = {}
    for identifier, signatures in seen.items():
        profile = scope.owner_of.get(identifier)
        if profile is None or profile not in alive or profile in whole_profiles:
            continue
        seen_kinds[profile] = seen_kinds.get(profile, 0) | program.kinds_of(signatures)
    # Profiles share a few combinations of kinds: each is worked out once per pass.
    narrowing: dict[int, tuple[frozenset[int], int]] = {}
    for kinds in set(seen_kinds.values()):
        chosen = frozenset(i for i, read in enumerate(program.output_kinds) if read & kinds)
        mask = reduce(operator.or_, (program.output_kinds[i] for i in chosen), 0) & EVERY_KIND
        narrowing[kinds] = (chosen, mask)
    return Relevance(
        {profile: narrowing[kinds][0] for profile, kinds in seen_kinds.items()},
        {profile: narrowing[kinds][1] for profile, kinds in seen_kinds.items()},
    )


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def write_scope(
    client: Client,
    ids: Sequence[str],
    owners: Sequence[str] | None = None,
    masks: Sequence[int] | None = None,
) -> None:
    """Put ``ids`` (and the profile of each) into the scratch table the next query reads.

    Thousands of ids bound as array parameters cost more to plan than the query costs to run
    (0.3-0.6 s at 9,000 ids, measured); an insert of column data costs ~10-20 ms. One evaluator
    writes it, under its lock, right before the queries that read it.
    """
    client.command("TRUNCATE TABLE audience_scope")
    if ids:
        columns: list[list[Any]] = [
            list(ids),
            list(owners) if owners is not None else [""] * len(ids),
            list(masks) if masks is not None else [EVERY_KIND] * len(ids),
        ]
        client.insert("audience_scope", columns, column_names=["id", "owner", "mask"], column_oriented=True)


def owners_of(client: Client, ids: Iterable[str]) -> dict[str, str]:
    """id -> its current profile (an unmapped id is its own profile)."""
    wanted = sorted(set(ids))
    found = {identifier: identifier for identifier in wanted}
    if wanted:
        write_scope(client, wanted)
        for identifier, owner in rows(client, OWNERS_SQL):
            if owner:
                found[str(identifier)] = str(owner)
    return found


def resolve_scope(client: Client, touched: Iterable[str], moved: Iterable[str] = ()) -> Scope:
    """The scope of ``touched`` ids; ``moved`` are ids whose mapping changed (also touched)."""
    moved = sorted(set(moved))
    touched = sorted(set(touched) | set(moved))
    owners = owners_of(client, touched)
    owner_of = dict(owners)
    candidates = set(touched) | set(owners.values())
    former: set[str] = set()
    for part in chunks(moved):
        former.update(str(profile) for (profile,) in rows(client, FORMER_OWNERS_SQL, ids=part))
    candidates |= former
    owners.update(owners_of(client, candidates - owners.keys()))
    alive = sorted(p for p in candidates if owners.get(p, p) == p)
    ids, profile_of = list(alive), list(alive)
    if alive:
        write_scope(client, alive)
        for identifier, owner in rows(client, PROFILE_IDS_SQL):
            if identifier != owner:
                ids.append(str(identifier))
                profile_of.append(str(owner))
    return Scope(
        tuple(sorted(candidates)), tuple(alive), tuple(ids), tuple(profile_of), owner_of, frozenset(former)
    )


def evaluate_scope(
    client: Client, program: Program, scope: Scope, now: int, narrowed: Relevance | None = None
) -> Values:
    """Every output of ``program`` for the alive profiles of ``scope`` (missing: no value);
    whether they are identified is left to :func:`identified_profiles`. For the profiles
    ``narrowed`` names, only its outputs are meaningful (the others are computed over part of
    the events, and must be ignored)."""
    if not program.outputs or not scope.alive:
        return {}
    masks = narrowed.masks if narrowed is not None else {}
    statement = evaluation_sql(program, everything=False, masked=bool(masks))
    write_scope(client, scope.ids, scope.owners, [masks.get(owner, EVERY_KIND) for owner in scope.owners])
    found: Values = {}
    for profile_id, _, *outputs in rows(client, statement, now_us=now, **program.parameters):
        found[str(profile_id)] = (None, tuple(outputs))
    return found


def evaluate_all(client: Client, program: Program, now: int, kinds: Sequence[str]) -> Values:
    """``program`` (outputs of ``kinds``) for every profile with some value: a backfill."""
    statement = evaluation_sql(program, everything=True, only_present=kinds)
    found: Values = {}
    for profile_id, identified, *outputs in rows(client, statement, now_us=now, **program.parameters):
        found[str(profile_id)] = (bool(identified), tuple(outputs))
    return found


def identified_profiles(client: Client, profiles: Iterable[str]) -> set[str]:
    """Which of ``profiles`` are identified (their canonical id is a userId)."""
    found: set[str] = set()
    for part in chunks(sorted(set(profiles))):
        found.update(str(profile) for (profile,) in rows(client, IDENTIFIED_SQL, ids=part))
    return found
