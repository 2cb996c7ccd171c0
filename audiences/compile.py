"""Definitions -> one SQL query that computes every definition's value for a set of profiles.

The query's shape is fixed (``audiences.queries``: the profiles' events and id states,
aggregated per profile, then one output column per definition); what a definition adds are
*expressions*, generated from its validated tree (``audiences.definitions``) out of fixed
fragments. No value of a definition ever becomes SQL text: event names, property names (each
name of a dotted path), trait keys and every compared value are query parameters
(``{p7:String}``), bound by ClickHouse, and their names are generated here, never taken from
the definition.

Semantics (docs/audiences.md):

* A property path reads ``properties``, or ``traits`` for identify and group calls.
* A computed trait's value is JSON text (what ``JSONExtractRaw`` gives), NULL when no
  matching event has the property (count: NULL when no event matches). Numeric operators
  (sum, avg, min, max) take only properties that are JSON numbers; sums and averages are
  exact decimals with 6 places, so a value never changes with the order events are read in.
* A comparison is typed by the value it compares with: a number matches JSON numbers, a string
  JSON strings, a boolean JSON booleans. Anything compared with an absent value is false
  (``neq`` included); ``exists`` tests presence (JSON null counts as absent).
* ``most_frequent`` breaks ties by the smallest JSON text; ``unique`` keeps the smallest
  ``limit`` distinct values by JSON text (both deterministic).

What each output reads is known too (``Program.kinds``, ``Program.output_kinds``): the event
kinds of its selectors, those of the traits and audiences it tests inline included. A pass uses
it to evaluate, for a profile whose new events are all of some kinds, only the outputs those
kinds can move, reading only the events those outputs count (``audiences.evaluate``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from feedhouse.audiences.definitions import (
    AUDIENCE,
    AllOf,
    AnyOf,
    AudienceTest,
    Compute,
    Condition,
    Definition,
    EventTest,
    Filter,
    Not,
    Scalar,
    Selector,
    TraitTest,
)

NOW = "{now_us:Int64}"  # the evaluation's clock, bound per run
# A row's kinds are bits of one UInt64 (``Program.row_kinds``); a program counting more kinds
# than that reads every counted row for every profile, as before kinds were tracked.
MAX_KINDS = 64

Kind = tuple[str, str]  # (type, track event name or '' for every event of the type)
NUMBER_TYPES = "('Int64', 'UInt64', 'Double')"
COMPARISONS = {"eq": "=", "neq": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class UnknownDefinition(LookupError):
    """An audience tests a computed trait or an audience that is not among the known definitions."""


@dataclass
class Binder:
    """Generates parameter names and keeps their values: ``bind(v, 'String')`` -> ``{p0:String}``.

    The same value of the same type gets the same name, so two definitions testing the same
    events produce the same aggregate text and share one aggregate column.
    """

    values: dict[str, Any] = field(default_factory=dict)
    names: dict[tuple[str, bytes], str] = field(default_factory=dict)

    def __call__(self, value: Any, kind: str) -> str:
        key = (kind, orjson.dumps(value))
        name = self.names.get(key)
        if name is None:
            name = self.names[key] = f"p{len(self.values)}"
            self.values[name] = value
        return f"{{{name}:{kind}}}"


@dataclass
class Aggregates:
    """Per-profile aggregate columns, shared by every definition that needs the same one."""

    events: dict[str, str] = field(default_factory=dict)  # SQL -> alias (over the events)
    states: dict[str, str] = field(default_factory=dict)  # SQL -> alias (over the id states)

    def event(self, sql: str) -> str:
        if sql not in self.events:
            self.events[sql] = f"a{len(self.events)}"
        return self.events[sql]

    def state(self, sql: str) -> str:
        if sql not in self.states:
            self.states[sql] = f"t{len(self.states)}"
        return self.states[sql]


@dataclass(frozen=True, slots=True)
class Program:
    """What the query shells need: aggregate lists, one output expression per definition, and
    the event prefilter, with the parameters they bind (``now_us`` and the scope are bound per
    run)."""

    outputs: tuple[tuple[str, str], ...]  # (definition key, output SQL), in definition order
    event_aggregates: tuple[tuple[str, str], ...]  # (alias, SQL)
    state_aggregates: tuple[tuple[str, str], ...]
    prefilter: str
    events: frozenset[str]  # track event names some selector counts ...
    types: frozenset[str]  # ... and the types
    windows: tuple[int, ...]  # distinct within_days of every windowed selector
    expiry_prefilter: str  # events a window can drop (the windowed selectors' prefilter)
    uses_properties: bool
    uses_traits: bool
    parameters: dict[str, Any]
    kinds: tuple[Kind, ...] = ()  # every kind a selector counts; bit i of a mask is kinds[i]
    output_kinds: tuple[int, ...] = ()  # per output, the mask of the kinds it reads
    row_kinds: str = ""  # SQL: the mask of a row's kinds ('' when there are too many kinds)

    def kinds_of(self, signatures: Iterable[Kind]) -> int:
        """The mask of the kinds events of these (type, event name) signatures are of."""
        mask = 0
        for kind, name in signatures:
            for bit, (counted, counted_name) in enumerate(self.kinds):
                if kind == counted and counted_name in ("", name):
                    mask |= 1 << bit
        return mask


def compile_definitions(definitions: Sequence[Definition], known: Mapping[str, Definition]) -> Program:
    """One program computing every definition in ``definitions``.

    ``known`` maps keys to every definition: an audience's tests of computed traits and of other
    audiences are computed inline from their formulas (so an audience never waits for another
    output, and all of them see the same events).
    """
    bind = Binder()
    aggregates = Aggregates()
    selectors: list[Selector] = []
    outputs: list[tuple[str, str]] = []
    read_by_output: list[list[Selector]] = []
    for definition in definitions:
        first = len(selectors)
        if definition.kind == AUDIENCE:
            assert definition.when is not None
            condition = _condition(definition.when, known, aggregates, bind, selectors, (definition.key,))
            sql = f"toUInt8({condition})"
        else:
            assert definition.compute is not None
            sql = _value(definition.compute, aggregates, bind, selectors)
        outputs.append((definition.key, sql))
        read_by_output.append(selectors[first:])
    kinds = tuple(sorted({_kind_of(selector) for selector in selectors}))
    bits = {kind: 1 << bit for bit, kind in enumerate(kinds)}
    output_kinds = tuple(sum({bits[_kind_of(selector)] for selector in read}) for read in read_by_output)
    row_kinds = ""
    if 0 < len(kinds) <= MAX_KINDS:
        parts = [f"if({_kind_sql(kind, bind)}, {1 << bit}, 0)" for bit, kind in enumerate(kinds)]
        row_kinds = "toUInt64(" + " + ".join(parts) + ")"
    # Column names are the only identifiers this module writes, so a plain search is exact.
    event_sql = " ".join(aggregates.events)
    return Program(
        outputs=tuple(outputs),
        event_aggregates=tuple((alias, sql) for sql, alias in aggregates.events.items()),
        state_aggregates=tuple((alias, sql) for sql, alias in aggregates.states.items()),
        prefilter=_prefilter(selectors, bind),
        events=frozenset(s.event for s in selectors if s.event is not None),
        types=frozenset(s.type for s in selectors if s.type is not None),
        windows=tuple(sorted({s.within_days for s in selectors if s.within_days is not None})),
        expiry_prefilter=_prefilter([s for s in selectors if s.within_days is not None], bind),
        uses_properties=re.search(r"\bproperties\b", event_sql) is not None,
        uses_traits=re.search(r"\btraits\b", event_sql) is not None,
        parameters=bind.values,
        kinds=kinds,
        output_kinds=output_kinds,
        row_kinds=row_kinds,
    )


# ---- computed traits --------------------------------------------------------------------------


def _value(compute: Compute, aggregates: Aggregates, bind: Binder, selectors: list[Selector]) -> str:
    """The JSON-text value of a computed trait (NULL when it has none), over level-1 aggregates."""
    selectors.append(compute.selector)
    matches = _matches(compute.selector, bind)
    if compute.op == "count":
        count = aggregates.event(f"countIf({matches})")
        return f"if({count} = 0, NULL, toString({count}))"
    assert compute.property is not None
    # The property is cut out of the event's JSON once (identical expressions are computed once
    # per query), and typed from that short text, rather than parsing the event per function.
    raw = _extract(compute.selector, compute.property, bind)
    kind = f"JSONType({raw})"
    if compute.op in ("sum", "avg", "min", "max"):
        usable = f"({matches}) AND {kind} IN {NUMBER_TYPES}"
        number = f"JSONExtractFloat({raw})"
        count = aggregates.event(f"countIf({usable})")
        if compute.op in ("sum", "avg"):
            # Summed as decimals (6 places, values clamped to +-1e15): a float sum depends on
            # the order rows arrive in, and a value that moves in its last digit is a change.
            exact = f"toDecimal128(least(greatest({number}, -1e15), 1e15), 6)"
            total = aggregates.event(f"sumIf({exact}, {usable})")
            result = total if compute.op == "sum" else f"{total} / {count}"
            return f"if({count} = 0, NULL, toJSONString({result}))"
        result = aggregates.event(f"{compute.op}If({number}, {usable})")
        return f"if({count} = 0, NULL, toJSONString({result}))"
    present = f"({matches}) AND {kind} != 'Null'"
    count = aggregates.event(f"countIf({present})")
    if compute.op in ("first", "last"):
        pick = "argMinIf" if compute.op == "first" else "argMaxIf"
        chosen = aggregates.event(f"{pick}({raw}, (timestamp, message_id), {present})")
        return f"if({count} = 0, NULL, {chosen})"
    if compute.op == "most_frequent":
        counts = aggregates.event(f"sumMapIf([{raw}], [toUInt64(1)], {present})")
        return f"if(empty({counts}.1), NULL, {counts}.1[indexOf({counts}.2, arrayMax({counts}.2))])"
    assert compute.op == "unique"
    values = aggregates.event(f"groupUniqArrayIf({raw}, {present})")
    limit = bind(compute.limit, "UInt32")
    return (
        f"if(empty({values}), NULL,"
        f" concat('[', arrayStringConcat(arraySlice(arraySort({values}), 1, {limit}), ','), ']'))"
    )


# ---- audiences --------------------------------------------------------------------------------


def _condition(
    condition: Condition,
    known: Mapping[str, Definition],
    aggregates: Aggregates,
    bind: Binder,
    selectors: list[Selector],
    chain: tuple[str, ...],
) -> str:
    """``condition`` as SQL; ``chain``: the audiences being compiled, outermost first."""
    if isinstance(condition, AllOf | AnyOf):
        joiner = " AND " if isinstance(condition, AllOf) else " OR "
        parts = [_condition(item, known, aggregates, bind, selectors, chain) for item in condition.items]
        return "(" + joiner.join(parts) + ")"
    if isinstance(condition, Not):
        return f"(NOT {_condition(condition.item, known, aggregates, bind, selectors, chain)})"
    if isinstance(condition, AudienceTest):
        tested = known.get(condition.audience)
        # The admin API refuses cycles (definitions.check_references); stored rows are re-checked.
        if tested is None or tested.when is None or condition.audience in chain:
            raise UnknownDefinition(condition.audience)
        inner = _condition(tested.when, known, aggregates, bind, selectors, (*chain, condition.audience))
        return f"({inner})"
    if isinstance(condition, EventTest):
        selectors.append(condition.selector)
        count = aggregates.event(f"countIf({_matches(condition.selector, bind)})")
        return f"({count} {COMPARISONS[condition.count_op]} {bind(condition.count_value, 'UInt64')})"
    assert isinstance(condition, TraitTest)
    if condition.computed:
        trait = known.get(condition.trait)
        if trait is None or trait.compute is None:
            raise UnknownDefinition(condition.trait)
        raw = _value(trait.compute, aggregates, bind, selectors)
    else:
        name = bind(condition.trait, "String")
        # Identify traits merged across the profile's ids: newest event time wins, ties to the
        # larger id (the rule of docs/identity.md and the profiles view).
        alias = aggregates.state(
            f"argMaxIf(JSONExtractRaw(traits, {name}), (JSONExtract(trait_times, {name}, 'Int64'), id),"
            f" JSONHas(traits, {name}))"
        )
        raw = f"nullIf({alias}, '')"
    return compare(raw, condition.op, condition.value, bind)


# ---- events -----------------------------------------------------------------------------------


def _kind_of(selector: Selector) -> Kind:
    return ("track", selector.event) if selector.event is not None else (str(selector.type), "")


def _kind(selector: Selector, bind: Binder) -> str:
    """The event kind a selector counts: a track event name, or a type."""
    return _kind_sql(_kind_of(selector), bind)


def _kind_sql(kind: Kind, bind: Binder) -> str:
    event_type, name = kind
    if name:
        return f"(type = 'track' AND event = {bind(name, 'String')})"
    return f"(type = {bind(event_type, 'String')})"


def _matches(selector: Selector, bind: Binder) -> str:
    """The condition an event must meet to count for ``selector`` (over one deduplicated event)."""
    parts = [_kind(selector, bind)]
    if selector.within_days is not None:
        days = bind(selector.within_days, "UInt32")
        parts.append(f"timestamp > fromUnixTimestamp64Micro({NOW}, 'UTC') - toIntervalDay({days})")
    for test in selector.where:
        parts.append(_filter(test, selector, bind))
    return " AND ".join(parts)


def _filter(test: Filter, selector: Selector, bind: Binder) -> str:
    return compare(f"nullIf({_extract(selector, test.path, bind)}, '')", test.op, test.value, bind)


def _prefilter(selectors: Sequence[Selector], bind: Binder) -> str:
    """Rows any selector could count: scanning only these keeps the deduplication step small."""
    names = sorted({s.event for s in selectors if s.event is not None})
    kinds = sorted({s.type for s in selectors if s.type is not None})
    parts = []
    if names:
        parts.append(f"(type = 'track' AND event IN {bind(names, 'Array(String)')})")
    if kinds:
        parts.append(f"type IN {bind(kinds, 'Array(String)')}")
    return " OR ".join(parts) if parts else "0"


def _column(selector: Selector) -> str:
    return "traits" if selector.reads_traits else "properties"


def _extract(selector: Selector, path: Sequence[str], bind: Binder) -> str:
    """The JSON text at ``path`` of an event the selector counts (``''`` when absent, or for
    other events), each name a parameter.

    Parsing JSON is most of a pass's cost, so it is done only for the rows of the selector's
    kind (``if`` evaluates its branch only where the condition holds), and once per (kind,
    path) however many definitions read it (identical expressions are computed once).
    """
    names = ", ".join(bind(name, "String") for name in path)
    return f"if({_kind(selector, bind)}, JSONExtractRaw({_column(selector)}, {names}), '')"


# ---- comparisons ------------------------------------------------------------------------------


def compare(raw: str, op: str, value: Scalar | None, bind: Binder) -> str:
    """``raw op value`` where ``raw`` is a JSON-text expression, NULL when absent; never NULL itself."""
    present = f"({raw} IS NOT NULL AND {raw} != 'null')"
    if op == "exists":
        return present if value is None else f"(NOT {present})"
    assert value is not None
    if isinstance(value, bool):
        typed, extracted, bound = f"JSONType({raw}) = 'Bool'", f"JSONExtractBool({raw})", bind(value, "Bool")
    elif isinstance(value, int | float):
        typed = f"JSONType({raw}) IN {NUMBER_TYPES}"
        extracted, bound = f"JSONExtractFloat({raw})", bind(float(value), "Float64")
    else:
        typed = f"JSONType({raw}) = 'String'"
        extracted, bound = f"JSONExtractString({raw})", bind(value, "String")
    if op == "contains":
        text = f"(JSONType({raw}) = 'String' AND position(JSONExtractString({raw}), {bound}) > 0)"
        items = f"JSONExtract(ifNull({raw}, ''), 'Array(String)')"
        listed = f"(JSONType({raw}) = 'Array' AND has({items}, {bound}))"
        return f"ifNull({present} AND ({text} OR {listed}), 0)"
    if op == "neq":
        return f"ifNull({present} AND NOT ({typed} AND {extracted} = {bound}), 0)"
    return f"ifNull({present} AND {typed} AND {extracted} {COMPARISONS[op]} {bound}, 0)"
