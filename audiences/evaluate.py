"""Running compiled programs: which profiles some ids concern, and their values. Reads only.

:func:`resolve_scope` turns the ids an incoming batch touched (events' person keys, ids whose
mapping or state changed) into the profiles to evaluate: each id's current profile, every
profile an id with a new mapping ever belonged to (the one it left must be evaluated too), and
the touched ids themselves as candidate profiles (an anonymous profile merged into a user's is
no longer a profile: it must lose its memberships). Alive candidates bring all their ids.

The work is that of the touched profiles, never of all profiles: the queries are key lookups
on ``id_mapping`` / ``id_mapping_by_profile`` / ``events`` (ordered by person key).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from feedhouse.audiences.compile import Program
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


@dataclass(frozen=True, slots=True)
class Scope:
    """Profiles to evaluate and the ids that make them up."""

    candidates: tuple[str, ...]  # every profile whose values may have moved (alive or not)
    alive: tuple[str, ...]  # candidates that are profiles now (their canonical id maps to itself)
    ids: tuple[str, ...]  # every id of the alive profiles ...
    owners: tuple[str, ...]  # ... and the profile each belongs to


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def write_scope(client: Client, ids: Sequence[str], owners: Sequence[str] | None = None) -> None:
    """Put ``ids`` (and the profile of each) into the scratch table the next query reads.

    Thousands of ids bound as array parameters cost more to plan than the query costs to run
    (0.3-0.6 s at 9,000 ids, measured); an insert of column data costs ~10-20 ms. One evaluator
    writes it, under its lock, right before the queries that read it.
    """
    client.command("TRUNCATE TABLE audience_scope")
    if ids:
        columns = [list(ids), list(owners) if owners is not None else [""] * len(ids)]
        client.insert("audience_scope", columns, column_names=["id", "owner"], column_oriented=True)


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
    candidates = set(touched) | set(owners.values())
    for part in chunks(moved):
        candidates.update(str(profile) for (profile,) in rows(client, FORMER_OWNERS_SQL, ids=part))
    owners.update(owners_of(client, candidates - owners.keys()))
    alive = sorted(p for p in candidates if owners.get(p, p) == p)
    ids, profile_of = list(alive), list(alive)
    if alive:
        write_scope(client, alive)
        for identifier, owner in rows(client, PROFILE_IDS_SQL):
            if identifier != owner:
                ids.append(str(identifier))
                profile_of.append(str(owner))
    return Scope(tuple(sorted(candidates)), tuple(alive), tuple(ids), tuple(profile_of))


def evaluate_scope(client: Client, program: Program, scope: Scope, now: int) -> Values:
    """Every output of ``program`` for the alive profiles of ``scope`` (missing: no value);
    whether they are identified is left to :func:`identified_profiles`."""
    if not program.outputs or not scope.alive:
        return {}
    statement = evaluation_sql(program, everything=False)
    write_scope(client, scope.ids, scope.owners)
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
