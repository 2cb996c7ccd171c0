"""What Feedhouse knows about its ClickHouse tables, in one place: sink and readers import it.

Each table the sink fills is described by the Avro schema of its topic (``avro/schemas``):
one column per schema field, named in snake_case (``messageId`` -> ``message_id``), in schema
order, plus the columns Feedhouse derives (``person_key``). So adding a field to an event is
one schema change and one migration; the sink's column list, its row builder and the readers'
select list follow from here (tests/unit/clickhouse/test_tables.py and
tests/integration/test_migrations.py check that schema, tables and migrations agree).

Conversions are chosen per field type: optional strings become ``''`` (ClickHouse strings are
not Nullable here: cheaper, and ``''`` means absent in every documented query); times stay
integers (microseconds since the epoch are exactly the ticks of a ``DateTime64(6)``), clamped
to the range that type can hold.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from feedhouse.avro.codec import newest_schema
from feedhouse.avro.flat import flat_layout
from feedhouse.ids import person_key

# DateTime64 covers [1900-01-01, 2299-12-31 23:59:59.999999]; outside it ClickHouse stores
# garbage that cannot be read back. Client clocks do send such times (the gateway accepts any
# ISO-8601 value), so they are clamped; original_timestamp keeps what the client sent.
MIN_MICROS = -2_208_988_800_000_000
MAX_MICROS = 10_413_791_999_999_999

Row = tuple[Any, ...]
RowBuilder = Callable[[Mapping[str, Any]], Row]


def clamp_micros(value: int) -> int:
    """``value`` limited to the range a ``DateTime64(6)`` column can hold."""
    if value < MIN_MICROS:
        return MIN_MICROS
    if value > MAX_MICROS:
        return MAX_MICROS
    return value


def snake_case(name: str) -> str:
    """``messageId`` -> ``message_id``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, the Avro field it comes from (None: derived), and its kind.

    ``kind`` is ``string``, ``long``, ``int``, ``boolean``, ``array<string>`` or ``time``;
    ``nullable`` says whether the Avro field may be null (strings then become ``''``, other
    kinds stay None: the column is ``Nullable``).
    """

    name: str
    field: str | None
    kind: str
    nullable: bool

    @property
    def clickhouse_type(self) -> str:
        """The base type the migration must give the column (LowCardinality aside)."""
        base = {
            "string": "String",
            "long": "Int64",
            "int": "Int32",
            "boolean": "Bool",
            "array<string>": "Array(String)",
            "time": "DateTime64(6, 'UTC')",
        }[self.kind]
        return f"Nullable({base})" if self.nullable and self.kind != "string" else base


@dataclass(frozen=True, slots=True)
class Table:
    """A table filled from one topic: its columns and how a decoded record becomes a row."""

    name: str
    schema: str
    columns: tuple[Column, ...]
    row_type: type[tuple[Any, ...]]
    derived: tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.name} has no column {name!r}")

    def select_list(self, names: Sequence[str] | None = None, alias: str = "") -> str:
        """``a, b, toUnixTimestamp64Micro(t) AS t_us, ...``: the columns ``names`` (default: all)
        in that order, times as epoch microseconds, for readers.

        Time aliases get a suffix: ClickHouse lets an alias shadow a column in WHERE and ORDER
        BY, and the readers filter and sort on the DateTime64 columns themselves.
        """
        prefix = f"{alias}." if alias else ""
        parts = []
        for column in self.columns if names is None else [self.column(name) for name in names]:
            if column.kind == "time":
                parts.append(f"toUnixTimestamp64Micro({prefix}{column.name}) AS {column.name}_us")
            else:
                parts.append(f"{prefix}{column.name}")
        return ", ".join(parts)

    def row_builder(self, **bound: Any) -> RowBuilder:
        """A compiled function: decoded record -> row tuple, in column order.

        Generated once per table (a straight-line expression per column: the sink runs it
        for every row). ``bound`` gives the extra arguments of derived columns by name
        (``placeholders``). Rows are plain tuples, not ``row_type`` instances: building a
        namedtuple per row measurably slowed the sink (``python -m bench.sink_throughput``);
        ``row_type._make(row)`` gives the typed view where it is worth it (tests, readers).
        """
        names: dict[str, Any] = {"clamp": clamp_micros}
        expressions = []
        for column in self.columns:
            if column.field is None:
                function, fields, _ = next((f, a, n) for n, f, a in self.derived if n == column.name)
                names[f"derive_{column.name}"] = function
                arguments = [f"record[{field!r}]" for field in fields]
                for parameter in _parameters(function)[len(fields) :]:
                    if parameter not in bound:
                        raise TypeError(f"{self.name}.{column.name} needs {parameter}=...")
                    arguments.append(f"{parameter}={parameter}")
                expressions.append(f"derive_{column.name}({', '.join(arguments)})")
                continue
            value = f"record[{column.field!r}]"
            if column.kind == "time":
                value = (
                    f"(None if {value} is None else clamp({value}))" if column.nullable else f"clamp({value})"
                )
            elif column.kind == "string" and column.nullable:
                value = f"({value} or '')"
            elif column.kind == "array<string>":
                value = f"list({value})"
            expressions.append(value)
        names.update(bound)
        source = f"def build(record):\n    return ({', '.join(expressions)},)\n"
        exec(compile(source, f"<row builder {self.name}>", "exec"), names)
        builder: RowBuilder = names["build"]
        return builder

    def container_schema(self) -> dict[str, Any]:
        """The Avro schema of this table's rows as the sink hands them to ClickHouse: the topic's
        fields in order, named as their columns (Avro binary is positional, so a datum of the
        topic's schema is a datum of this one), times as ``timestamp-micros`` (DateTime64(6)),
        then the derived columns as strings appended to each datum."""
        avro_types = {"string": "string", "long": "long", "int": "int", "boolean": "boolean"}
        fields: list[dict[str, Any]] = []
        for column in self.columns:
            kind: Any
            if column.kind == "time":
                kind = {"type": "long", "logicalType": "timestamp-micros"}
            elif column.kind == "array<string>":
                kind = {"type": "array", "items": "string"}
            else:
                kind = avro_types[column.kind]
            nullable = column.nullable and column.field is not None
            fields.append({"name": column.name, "type": ["null", kind] if nullable else kind})
        return {"type": "record", "name": f"{self.name}_row", "fields": fields}


def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    return tuple(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]) if code else ()


def table_from_schema(
    name: str,
    schema: str,
    *,
    times: tuple[str, ...] = (),
    renames: Mapping[str, str] | None = None,
    derived: tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...] = (),
) -> Table:
    """The table of topic schema ``schema`` (its newest version): a column per field, then ``derived``.

    ``times`` names the long fields that are microsecond timestamps; ``renames`` maps a field
    to a column name other than its snake_case; ``derived`` lists (column, function, fields).
    """
    layout = flat_layout(newest_schema(schema))
    if layout is None:
        raise ValueError(f"schema {schema} is not flat: the sink writes flat records only")
    renames = renames or {}
    columns = []
    for field, nullable, kind in layout:
        if field in times:
            if kind != "long":
                raise ValueError(f"{schema}.{field} is a time but not a long")
            kind = "time"
        columns.append(Column(renames.get(field, snake_case(field)), field, kind, nullable))
    columns += [Column(column, None, "string", False) for column, _, _ in derived]
    row_name = snake_case(name).title().replace("_", "") + "Row"
    row_type: type[tuple[Any, ...]] = namedtuple(row_name, [c.name for c in columns])  # type: ignore[misc]
    return Table(name, schema, tuple(columns), row_type, derived)


EVENTS = table_from_schema(
    "events",
    "event",
    times=("timestamp", "receivedAt"),
    # The id the identity tables resolve to a profile at query time (feedhouse.ids).
    derived=(("person_key", person_key, ("userId", "anonymousId")),),
)
REJECTED_EVENTS = table_from_schema(
    "rejected_events", "rejected", times=("receivedAt",), renames={"index": "batch_index"}
)
ID_MAPPING = table_from_schema("id_mapping", "id_mapping", times=("updatedAt",))
PROFILE_MEMBERS = table_from_schema("profile_members", "profile_members", times=("updatedAt",))
ID_STATE = table_from_schema("id_state", "id_state", times=("groupTime", "updatedAt"))
GROUP_STATE = table_from_schema("group_state", "group_state", times=("updatedAt",))

TABLES: dict[str, Table] = {
    table.name: table
    for table in (EVENTS, REJECTED_EVENTS, ID_MAPPING, PROFILE_MEMBERS, ID_STATE, GROUP_STATE)
}
