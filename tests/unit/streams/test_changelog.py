"""The one Faust override: what ChangelogTable relies on still holds in the installed Faust."""

from __future__ import annotations

from typing import Any

import faust
import orjson
import pytest
from faust.sensors import Sensor
from mode.utils.collections import ManagedUserDict

from feedhouse.streams import changelog
from feedhouse.streams.changelog import FaustChanged, changelog_table, check_faust


class RecordingOutputs:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes | None, int]] = []

    def publish(self, topic: str, key: bytes, value: bytes | None, partition: int = -1) -> None:
        self.records.append((topic, key, value, partition))


class RecordingSensor(Sensor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sets: list[tuple[str, Any]] = []

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        self.sets.append((table.name, key))


def test_the_installed_faust_is_one_this_module_was_checked_against() -> None:
    check_faust()


def test_a_faust_whose_tables_stop_calling_on_key_set_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def quiet_setitem(self: Any, key: Any, value: Any) -> None:
        self.data[key] = value

    monkeypatch.setattr(ManagedUserDict, "__setitem__", quiet_setitem)
    with pytest.raises(FaustChanged, match="on_key_set"):
        check_faust()


def test_an_unchecked_faust_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faust, "__version__", "0.99.0")
    with pytest.raises(FaustChanged, match="never checked"):
        check_faust()
    assert changelog.TESTED_FAUST  # the range pyproject.toml pins


def test_writes_become_changelog_records_in_the_events_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    app = faust.App("changelog-test", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    sensor = RecordingSensor()
    app.sensors.add(sensor)
    outputs = RecordingOutputs()
    table = changelog_table(app, outputs, "nodes", partitions=4)  # type: ignore[arg-type]
    # Inside an agent the current event's partition; here a stand-in for that event.
    monkeypatch.setattr(table, "partition_for_key", lambda key: 3)
    table["id-1"] = {"p": "user-1", "v": 7}
    del table["id-1"]
    topic = table.changelog_topic.get_topic_name()
    assert topic == "changelog-test-nodes-changelog"
    assert outputs.records == [
        (topic, orjson.dumps("id-1"), orjson.dumps({"p": "user-1", "v": 7}), 3),
        (topic, orjson.dumps("id-1"), None, 3),  # a tombstone: recovery deletes the key
    ]
    assert sensor.sets == [("nodes", "id-1")]
    assert "id-1" not in table
