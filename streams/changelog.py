"""The one place Feedhouse depends on how Faust keeps a table: changelog records via librdkafka.

Faust's own changelog path (``send_soon`` into its producer buffer, one awaited aiokafka send
per record) costs ~0.1-0.2 ms of event-loop time per write and was the identity worker's
bottleneck (docs/identity.md). :class:`ChangelogTable` produces the same records through the
worker's confluent-kafka producer (:class:`~feedhouse.streams.outputs.Outputs`), made durable
before every Faust commit by a sensor.

What it relies on, all through public surfaces:

* ``on_key_set(key, value)``, the documented hook of ``mode``'s ``ManagedUserDict`` (which
  ``faust.Table`` is) that every ``table[key] = value`` calls;
* ``partition_for_key`` (the current event's partition), ``changelog_topic`` and
  ``app.sensors.on_table_set`` (the sensor API);
* the changelog wire format Faust's recovery reads: JSON key and JSON value (the default
  serializer of tables without key/value types), in the source event's partition.

:func:`check_faust` verifies all of it at start-up and tests/unit/streams/test_changelog.py
exercises it, so a Faust release that changes any of it fails loudly instead of silently
losing state on recovery. The supported range is pinned in pyproject.toml.
"""

from __future__ import annotations

import inspect
from typing import Any

import faust
import orjson
from mode.utils.collections import ManagedUserDict

from feedhouse.streams.outputs import Outputs

TESTED_FAUST = ("0.15.",)  # faust-streaming versions this module was checked against


class FaustChanged(RuntimeError):
    """The installed Faust no longer offers what :class:`ChangelogTable` relies on."""


def check_faust() -> None:
    """Raise :class:`FaustChanged` unless Faust still works the way this module relies on."""
    problems: list[str] = []
    if not faust.__version__.startswith(TESTED_FAUST):
        problems.append(f"faust-streaming {faust.__version__} was never checked (tested: {TESTED_FAUST})")
    if "self.on_key_set(key, value)" not in inspect.getsource(ManagedUserDict.__setitem__):
        problems.append("ManagedUserDict.__setitem__ no longer calls on_key_set(key, value)")
    if list(inspect.signature(faust.Table.on_key_set).parameters) != ["self", "key", "value"]:
        problems.append("Table.on_key_set(key, value) changed its signature")
    for name in ("partition_for_key", "changelog_topic"):
        if not hasattr(faust.Table, name):
            problems.append(f"faust.Table.{name} is gone")
    if problems:
        raise FaustChanged("; ".join(problems))


class ChangelogTable(faust.Table):
    """A Faust table whose changelog records are produced through :class:`Outputs`."""

    outputs: Outputs

    def on_key_set(self, key: Any, value: Any) -> None:
        partition = self.partition_for_key(key)
        self.outputs.publish(
            self.changelog_topic.get_topic_name(),
            orjson.dumps(key),
            orjson.dumps(value),
            -1 if partition is None else partition,
        )
        self.app.sensors.on_table_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        # A tombstone: Faust's recovery deletes the key when the value is null.
        partition = self.partition_for_key(key)
        self.outputs.publish(
            self.changelog_topic.get_topic_name(),
            orjson.dumps(key),
            None,
            -1 if partition is None else partition,
        )
        self.app.sensors.on_table_del(self, key)


def changelog_table(app: faust.App, outputs: Outputs, name: str, partitions: int) -> ChangelogTable:
    """A :class:`ChangelogTable` registered with ``app`` like ``app.Table(name, ...)``."""
    check_faust()
    table = ChangelogTable(app, name=name, default=None, partitions=partitions)
    if (table.key_serializer, table.value_serializer) != ("json", "json"):
        raise FaustChanged(
            f"table {name} serializes changelogs as {table.key_serializer}/{table.value_serializer},"
            " not json/json: recovery would not read the records ChangelogTable writes"
        )
    table.outputs = outputs
    app.tables.add(table)
    return table
