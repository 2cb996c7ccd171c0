"""What an operator may define: computed traits and audiences, parsed into validated trees.

A definition arrives as JSON from the admin API and leaves this module as frozen dataclasses
(the AST the SQL compiler reads), or as a :class:`DefinitionError` whose message starts with
the path of the offending field (``when.all[1].op: unknown operator 'gte '``), so a 400 tells
the operator exactly what to fix. Everything the compiler will turn into SQL is checked here:
keys are snake_case, property paths match a strict pattern (each name is later bound as a
parameter, never pasted), values are scalars of bounded size, trees are bounded in depth and
size.

Shapes (docs/audiences.md has the full reference)::

    trait:    {"key", "name"?, "description"?, "compute": {"op", "event" | "type", "property"?,
               "within_days"?, "where"?: [FILTER], "limit"?}}
    audience: {"key", "name"?, "description"?, "when": CONDITION}
    FILTER:   {"property": PATH, "op": eq|neq|gt|gte|lt|lte|contains|exists, "value"?: V}
    CONDITION: {"all": [...]} | {"any": [...]} | {"not": C}
             | {"trait": KEY, "op", "value"?} | {"audience": KEY}
             | {"event": NAME | "type": TYPE, "within_days"?, "count"?: {"op", "value"}, "where"?}
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

TRAIT = "trait"
AUDIENCE = "audience"

COMPUTE_OPS = ("count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique")
NUMERIC_OPS = frozenset({"sum", "avg", "min", "max"})
FILTER_OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "contains", "exists")
COUNT_OPS = ("eq", "neq", "gt", "gte", "lt", "lte")
ORDER_OPS = frozenset({"gt", "gte", "lt", "lte"})
EVENT_TYPES = ("track", "page", "screen", "identify", "group", "alias")

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# One property name: letters, digits, '_', '-', '$'. Names are joined by dots for nesting.
PATH_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,128}$")
MAX_PATH_DEPTH = 8
MAX_NAME_CHARS = 200
MAX_TEXT_CHARS = 1024  # event names, trait names, string values
MAX_DESCRIPTION_CHARS = 2000
MAX_FILTERS = 20
MAX_CONDITION_NODES = 100
MAX_CONDITION_DEPTH = 10
# An audience's condition with the conditions of the audiences it tests put in their place (the
# query computes them inline): bounded, as a chain of references multiplies the parts.
MAX_EXPANDED_NODES = 1000
MAX_WITHIN_DAYS = 3650
MAX_COUNT = 1_000_000_000
DEFAULT_UNIQUE_LIMIT = 20
MAX_UNIQUE_LIMIT = 100

Scalar = str | int | float | bool


class DefinitionError(ValueError):
    """A definition that cannot be accepted; the message starts with the offending path."""


# ---- the tree ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    """A test on one property (or trait) of an event: ``path op value``."""

    path: tuple[str, ...]
    op: str
    value: Scalar | None  # None only for ``exists`` (meaning: exists)


@dataclass(frozen=True, slots=True)
class Selector:
    """Which events count: a track event name or a type, an optional window, filters."""

    event: str | None
    type: str | None
    within_days: int | None
    where: tuple[Filter, ...]

    @property
    def reads_traits(self) -> bool:
        """identify and group calls carry ``traits``; every other type carries ``properties``."""
        return self.type in ("identify", "group")


@dataclass(frozen=True, slots=True)
class Compute:
    """A computed trait's formula."""

    op: str
    selector: Selector
    property: tuple[str, ...] | None
    limit: int  # most values ``unique`` keeps


@dataclass(frozen=True, slots=True)
class TraitTest:
    """``trait op value`` on the profile: an identify trait, or a computed trait's value."""

    trait: str
    computed: bool
    op: str
    value: Scalar | None


@dataclass(frozen=True, slots=True)
class AudienceTest:
    """The profile is a member of Feedhouse's audience ``audience`` (computed in the same pass)."""

    audience: str


@dataclass(frozen=True, slots=True)
class EventTest:
    """How many matching events the profile has, compared with ``count_op count_value``."""

    selector: Selector
    count_op: str
    count_value: int


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition


Condition = AllOf | AnyOf | Not | TraitTest | AudienceTest | EventTest


@dataclass(frozen=True, slots=True)
class Definition:
    """A validated computed trait (``compute``) or audience (``when``), and its JSON form."""

    kind: str
    key: str
    name: str
    description: str
    compute: Compute | None
    when: Condition | None
    body: dict[str, Any]  # the canonical JSON the admin API stores and returns

    def traits_used(self) -> frozenset[str]:
        """Keys of the computed traits this audience tests (its dependencies)."""
        return frozenset(
            test.trait for test in walk(self.when) if isinstance(test, TraitTest) and test.computed
        )

    def audiences_used(self) -> frozenset[str]:
        """Keys of the audiences this audience tests membership of (its dependencies too)."""
        return frozenset(test.audience for test in walk(self.when) if isinstance(test, AudienceTest))

    def uses(self) -> frozenset[str]:
        """Every definition this one depends on directly."""
        return self.traits_used() | self.audiences_used()


def walk(condition: Condition | None) -> list[Condition]:
    """Every node of a condition tree, depth first."""
    return [] if condition is None else [node for _, node in paths(condition, "when")]


def fingerprint(definition: Definition, known: Mapping[str, Definition]) -> str:
    """What the values depend on: the formula, the formulas of the computed traits it tests, and
    those of the audiences it tests (with what they depend on in turn). ``known``: every
    definition by key.

    Two definitions with the same fingerprint have the same values, so a change of name or
    description needs no recomputation, and a changed computed trait or audience recomputes the
    audiences testing it.
    """
    return hashlib.sha256(
        orjson.dumps(_formula(definition, known, ()), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:32]


def _formula(
    definition: Definition, known: Mapping[str, Definition], chain: tuple[str, ...]
) -> dict[str, Any]:
    parts: dict[str, Any] = {"compute": definition.body.get("compute"), "when": definition.body.get("when")}
    parts["uses"] = {
        key: known[key].body.get("compute") for key in sorted(definition.traits_used()) if key in known
    }
    audiences = sorted(definition.audiences_used() - set(chain) - {definition.key})
    if audiences:  # absent otherwise: the fingerprints of older definitions stay what they were
        parts["audiences"] = {
            key: _formula(known[key], known, (*chain, definition.key)) for key in audiences if key in known
        }
    return parts


def check_references(definition: Definition, known: Mapping[str, Definition]) -> None:
    """Refuse an audience that tests itself through the audiences it tests, or whose condition,
    with theirs put in place, has more than :data:`MAX_EXPANDED_NODES` parts. ``known``: every
    other definition by key (the one being saved is ``definition``)."""
    if definition.when is None:
        return
    total = [0]

    def expand(condition: Condition, path: str, chain: tuple[str, ...]) -> None:
        for where, node in paths(condition, path):
            total[0] += 1
            if total[0] > MAX_EXPANDED_NODES:
                raise DefinitionError(
                    f"{where}: with the conditions of the audiences it tests, this audience has more"
                    f" than {MAX_EXPANDED_NODES} parts"
                )
            if not isinstance(node, AudienceTest):
                continue
            if node.audience == definition.key or node.audience in chain:
                through = " -> ".join((definition.key, *chain, node.audience))
                raise DefinitionError(f"{where}.audience: an audience cannot test itself ({through})")
            tested = known.get(node.audience)
            if tested is None or tested.when is None:
                raise DefinitionError(f"{where}.audience: there is no audience {node.audience!r}")
            expand(tested.when, where, (*chain, node.audience))

    expand(definition.when, "when", ())


def paths(condition: Condition, path: str) -> list[tuple[str, Condition]]:
    """Every node of a condition tree with its path in the definition (``when.all[1].not``)."""
    found: list[tuple[str, Condition]] = [(path, condition)]
    if isinstance(condition, AllOf | AnyOf):
        form = "all" if isinstance(condition, AllOf) else "any"
        for index, item in enumerate(condition.items):
            found += paths(item, f"{path}.{form}[{index}]")
    elif isinstance(condition, Not):
        found += paths(condition.item, f"{path}.not")
    return found


# ---- parsing ----------------------------------------------------------------------------------


def parse_definition(
    kind: str,
    body: object,
    *,
    computed_traits: frozenset[str] = frozenset(),
    audiences: frozenset[str] = frozenset(),
    key: str | None = None,
    stored: bool = False,
) -> Definition:
    """Validate ``body`` as a ``kind`` definition (:data:`TRAIT` or :data:`AUDIENCE`).

    ``computed_traits`` are the computed-trait keys that exist: an audience's trait test names
    one of them, or else an identify trait (decided now, stored in the definition).
    ``audiences`` are the audience keys an audience test may name (a trait test may not; whether
    an audience tests itself through others is :func:`check_references`' to say). ``key``, when given (a
    PUT to ``/v1/audiences/{key}``), is the key the body must have (or gets, when it has none).
    A trait test's ``"computed": true|false`` says explicitly which kind of trait it tests;
    ``stored`` bodies (read back from the table) keep what was decided when they were saved.
    """
    data = _object(body, "", ("key", "name", "description", "compute" if kind == TRAIT else "when"))
    if key is not None:
        data.setdefault("key", key)
        if data["key"] != key:
            raise DefinitionError(f"key: the body says {data['key']!r} but the path says {key!r}")
    definition_key = _key(data.get("key"), "key")
    name = _text(data.get("name", definition_key), "name", MAX_NAME_CHARS)
    description = _text(data.get("description", ""), "description", MAX_DESCRIPTION_CHARS, empty=True)
    canonical: dict[str, Any] = {"key": definition_key, "name": name}
    if description:
        canonical["description"] = description
    if kind == TRAIT:
        compute, canonical["compute"] = _compute(_required(data, "compute", ""), "compute")
        return Definition(kind, definition_key, name, description, compute, None, canonical)
    if kind != AUDIENCE:
        raise ValueError(f"unknown definition kind {kind!r}")
    counter = [0]
    when, canonical["when"] = _condition(
        _required(data, "when", ""),
        "when",
        computed_traits,
        audiences,
        depth=1,
        counter=counter,
        stored=stored,
    )
    return Definition(kind, definition_key, name, description, None, when, canonical)


def check_key(value: object, path: str = "key") -> str:
    """``value`` if it is a snake_case key (what traits and audiences are named)."""
    return _key(value, path)


def _key(value: object, path: str) -> str:
    if not isinstance(value, str) or not KEY_PATTERN.match(value):
        raise DefinitionError(
            f"{path}: must be snake_case: a lowercase letter, then lowercase letters, digits or _"
            f" (at most 64 characters); got {_show(value)}"
        )
    return value


def _compute(value: object, path: str) -> tuple[Compute, dict[str, Any]]:
    data = _object(value, path, ("op", "event", "type", "property", "within_days", "where", "limit"))
    op = _choice(_required(data, "op", path), f"{path}.op", COMPUTE_OPS, "operator")
    selector, canonical = _selector(data, path)
    canonical = {"op": op, **canonical}
    prop: tuple[str, ...] | None = None
    if "property" in data:
        prop = _path(data["property"], f"{path}.property")
        canonical["property"] = ".".join(prop)
    elif op != "count":
        raise DefinitionError(f"{path}.property: required for {op!r} (a path into the event's properties)")
    limit = DEFAULT_UNIQUE_LIMIT
    if "limit" in data:
        if op != "unique":
            raise DefinitionError(f"{path}.limit: only 'unique' takes a limit")
        limit = _integer(data["limit"], f"{path}.limit", 1, MAX_UNIQUE_LIMIT)
        canonical["limit"] = limit
    return Compute(op, selector, prop, limit), canonical


def _selector(data: dict[str, Any], path: str) -> tuple[Selector, dict[str, Any]]:
    """The event/type, within_days and where of a compute block or an event test."""
    canonical: dict[str, Any] = {}
    event = kind = None
    if ("event" in data) == ("type" in data):
        raise DefinitionError(
            f'{path}: needs exactly one of "event" (a track event name) or "type" ({", ".join(EVENT_TYPES)})'
        )
    if "event" in data:
        event = _text(data["event"], f"{path}.event", MAX_TEXT_CHARS)
        canonical["event"] = event
    else:
        kind = _choice(data["type"], f"{path}.type", EVENT_TYPES, "type")
        canonical["type"] = kind
    within: int | None = None
    if "within_days" in data and data["within_days"] is not None:
        within = _integer(data["within_days"], f"{path}.within_days", 1, MAX_WITHIN_DAYS)
        canonical["within_days"] = within
    filters: list[Filter] = []
    if "where" in data:
        where = data["where"]
        if not isinstance(where, list):
            raise DefinitionError(f"{path}.where: must be a list of filters")
        if len(where) > MAX_FILTERS:
            raise DefinitionError(f"{path}.where: at most {MAX_FILTERS} filters")
        shown = []
        for index, item in enumerate(where):
            test, text = _filter(item, f"{path}.where[{index}]")
            filters.append(test)
            shown.append(text)
        if shown:
            canonical["where"] = shown
    return Selector(event, kind, within, tuple(filters)), canonical


def _filter(value: object, path: str) -> tuple[Filter, dict[str, Any]]:
    data = _object(value, path, ("property", "op", "value"))
    prop = _path(_required(data, "property", path), f"{path}.property")
    op, operand = _test(data, path)
    canonical: dict[str, Any] = {"property": ".".join(prop), "op": op}
    if operand is not None:
        canonical["value"] = operand
    return Filter(prop, op, operand), canonical


def _test(data: dict[str, Any], path: str) -> tuple[str, Scalar | None]:
    """The ``op`` and ``value`` of a filter or trait test, checked against each other."""
    op = _choice(_required(data, "op", path), f"{path}.op", FILTER_OPS, "operator")
    if op == "exists":
        value = data.get("value", True)
        if not isinstance(value, bool):
            raise DefinitionError(f"{path}.value: 'exists' takes true or false; got {_show(value)}")
        return op, None if value else False
    value = _scalar(_required(data, "value", path), f"{path}.value")
    if op in ORDER_OPS and isinstance(value, bool):
        raise DefinitionError(f"{path}.value: {op!r} compares numbers or strings, not booleans")
    if op == "contains" and not isinstance(value, str):
        raise DefinitionError(f"{path}.value: 'contains' needs a string; got {_show(value)}")
    return op, value


def _condition(
    value: object,
    path: str,
    computed_traits: frozenset[str],
    audiences: frozenset[str],
    *,
    depth: int,
    counter: list[int],
    stored: bool = False,
) -> tuple[Condition, dict[str, Any]]:
    counter[0] += 1
    if counter[0] > MAX_CONDITION_NODES:
        raise DefinitionError(f"{path}: a condition may have at most {MAX_CONDITION_NODES} parts")
    if depth > MAX_CONDITION_DEPTH:
        raise DefinitionError(f"{path}: conditions nest at most {MAX_CONDITION_DEPTH} levels deep")
    if not isinstance(value, dict):
        raise DefinitionError(f"{path}: must be a condition object; got {_show(value)}")
    forms = [name for name in ("all", "any", "not", "trait", "audience", "event", "type") if name in value]
    if forms in (["all"], ["any"]):
        form = forms[0]
        _object(value, path, (form,))
        items = value[form]
        if not isinstance(items, list) or not items:
            raise DefinitionError(f"{path}.{form}: must be a non-empty list of conditions")
        parsed = [
            _condition(
                item,
                f"{path}.{form}[{i}]",
                computed_traits,
                audiences,
                depth=depth + 1,
                counter=counter,
                stored=stored,
            )
            for i, item in enumerate(items)
        ]
        nodes = tuple(node for node, _ in parsed)
        shown = [text for _, text in parsed]
        return (AllOf(nodes) if form == "all" else AnyOf(nodes)), {form: shown}
    if forms == ["not"]:
        _object(value, path, ("not",))
        node, text = _condition(
            value["not"],
            f"{path}.not",
            computed_traits,
            audiences,
            depth=depth + 1,
            counter=counter,
            stored=stored,
        )
        return Not(node), {"not": text}
    if forms == ["trait"]:
        data = _object(value, path, ("trait", "op", "value", "computed"))
        trait = _text(data["trait"], f"{path}.trait", MAX_TEXT_CHARS)
        if trait in audiences:
            raise DefinitionError(
                f'{path}.trait: {trait!r} is an audience; test its members with {{"audience": {trait!r}}}'
            )
        op, operand = _test(data, path)
        computed = trait in computed_traits
        if "computed" in data:
            if not isinstance(data["computed"], bool):
                raise DefinitionError(f"{path}.computed: must be true or false")
            if data["computed"] and not computed and not stored:
                raise DefinitionError(f"{path}.trait: there is no computed trait {trait!r}")
            computed = data["computed"]
        canonical: dict[str, Any] = {"trait": trait, "op": op}
        if operand is not None:
            canonical["value"] = operand
        canonical["computed"] = computed
        return TraitTest(trait, computed, op, operand), canonical
    if forms == ["audience"]:
        data = _object(value, path, ("audience",))
        audience = _key(data["audience"], f"{path}.audience")
        if audience in computed_traits:
            raise DefinitionError(
                f"{path}.audience: {audience!r} is a computed trait;"
                f' test it with {{"trait": {audience!r}, "op": ..., "value": ...}}'
            )
        if audience not in audiences and not stored:
            raise DefinitionError(f"{path}.audience: there is no audience {audience!r}")
        return AudienceTest(audience), {"audience": audience}
    if forms in (["event"], ["type"]):
        data = _object(value, path, ("event", "type", "within_days", "count", "where"))
        selector, canonical = _selector(data, path)
        count_op, count_value = "gte", 1
        if "count" in data:
            count = _object(data["count"], f"{path}.count", ("op", "value"))
            count_op = _choice(
                _required(count, "op", f"{path}.count"), f"{path}.count.op", COUNT_OPS, "operator"
            )
            count_value = _integer(
                _required(count, "value", f"{path}.count"), f"{path}.count.value", 0, MAX_COUNT
            )
        canonical["count"] = {"op": count_op, "value": count_value}
        return EventTest(selector, count_op, count_value), canonical
    if not forms:
        raise DefinitionError(
            f'{path}: must be one of {{"all": [...]}}, {{"any": [...]}}, {{"not": ...}},'
            ' a trait test {"trait", "op", "value"}, an audience test {"audience": KEY}'
            ' or an event test {"event", ...}'
        )
    raise DefinitionError(f"{path}: has both {forms[0]!r} and {forms[1]!r}; a condition is one of them")


# ---- scalars ----------------------------------------------------------------------------------


def _object(value: object, path: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DefinitionError(f"{path or 'body'}: must be a JSON object; got {_show(value)}")
    for name in value:
        if name not in allowed:
            where = f"{path}.{name}" if path else str(name)
            raise DefinitionError(f"{where}: unknown field (expected {', '.join(allowed)})")
    return dict(value)


def _required(data: dict[str, Any], name: str, path: str) -> Any:
    if name not in data:
        raise DefinitionError(f"{path + '.' if path else ''}{name}: required")
    return data[name]


def _choice(value: object, path: str, choices: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in choices:
        raise DefinitionError(f"{path}: unknown {what} {_show(value)} (expected {', '.join(choices)})")
    return value


def _text(value: object, path: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise DefinitionError(f"{path}: must be a string; got {_show(value)}")
    if not value and not empty:
        raise DefinitionError(f"{path}: must not be empty")
    if len(value) > limit:
        raise DefinitionError(f"{path}: at most {limit} characters")
    if "\x00" in value:
        raise DefinitionError(f"{path}: must not contain NUL characters")
    return value


def _integer(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DefinitionError(f"{path}: must be an integer from {low} to {high}; got {_show(value)}")
    return value


def _scalar(value: object, path: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        # Kept as given (2 stays 2 in the stored definition); compared as Float64 in SQL.
        if not math.isfinite(float(value)) or abs(float(value)) > 1e300:
            raise DefinitionError(f"{path}: must be a finite number")
        return value
    if isinstance(value, str):
        return _text(value, path, MAX_TEXT_CHARS, empty=True)
    raise DefinitionError(f"{path}: must be a string, a number or a boolean; got {_show(value)}")


def _path(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, str):
        raise DefinitionError(f'{path}: must be a property path such as "revenue" or "product.price"')
    names = tuple(value.split("."))
    if len(names) > MAX_PATH_DEPTH or not all(PATH_NAME.match(name) for name in names):
        raise DefinitionError(
            f"{path}: must be a property path: names of letters, digits, _, - or $ joined by dots"
            f" (at most {MAX_PATH_DEPTH} levels); got {_show(value)}"
        )
    return names


def _show(value: object) -> str:
    """A value as an error message quotes it: Python's repr for strings ('gte '), JSON otherwise."""
    if isinstance(value, str):
        return repr(value[:80] + ("..." if len(value) > 80 else ""))
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = type(value).__name__
    return text if len(text) <= 80 else text[:77] + "..."
