"""The embedded stack's shape per data directory: few partitions for a new one, the recorded
count for an existing one, and a plain error when asked to change it."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedhouse.dev import (
    EMBEDDED_LINGER_MS,
    EMBEDDED_PARTITIONS,
    PARTITIONS_BEFORE_LAYOUT,
    embedded_shape,
    wipe,
)
from feedhouse.settings import SettingsError


def test_a_new_data_directory_gets_the_embedded_shape_and_keeps_it(tmp_path: Path) -> None:
    assert embedded_shape(tmp_path, {}) == {
        "kafka_linger_ms": EMBEDDED_LINGER_MS,
        "events_partitions": EMBEDDED_PARTITIONS,
    }
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "object").write_text("data")
    assert embedded_shape(tmp_path, {})["events_partitions"] == EMBEDDED_PARTITIONS


def test_settings_from_the_environment_win_for_a_new_directory(tmp_path: Path) -> None:
    shape = embedded_shape(tmp_path, {"FEEDHOUSE_EVENTS_PARTITIONS": "6", "FEEDHOUSE_KAFKA_LINGER_MS": "1"})
    assert shape == {"events_partitions": 6}
    assert embedded_shape(tmp_path, {})["events_partitions"] == 6


def test_a_directory_from_before_the_layout_file_keeps_its_partitions(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / "object").write_text("data")
    assert embedded_shape(tmp_path, {})["events_partitions"] == PARTITIONS_BEFORE_LAYOUT


def test_asking_for_another_count_than_the_topics_have_is_refused(tmp_path: Path) -> None:
    embedded_shape(tmp_path, {})
    with pytest.raises(SettingsError, match="have 2 partitions"):
        embedded_shape(tmp_path, {"FEEDHOUSE_EVENTS_PARTITIONS": "8"})


def test_wiping_forgets_the_layout(tmp_path: Path) -> None:
    embedded_shape(tmp_path, {"FEEDHOUSE_EVENTS_PARTITIONS": "4"})
    wipe(tmp_path)
    assert embedded_shape(tmp_path, {})["events_partitions"] == EMBEDDED_PARTITIONS
