"""The ClickHouse client factory: URL forms, database names, one client per URL and purpose."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from feedhouse import settings as settings_module
from feedhouse.clickhouse.client import check_identifier, close_clients, database_for, get_client
from feedhouse.settings import SettingsError


@pytest.fixture(autouse=True)
def no_clients_left() -> Iterator[None]:
    # chDB hosts one data directory per process: leave none open for the next test.
    yield
    close_clients()


@pytest.mark.parametrize(
    ("url", "database"),
    [
        ("", "feedhouse"),  # embedded chDB under the data directory
        ("chdb:///var/lib/feedhouse", "feedhouse"),
        ("http://default:pw@clickhouse:8123", "feedhouse"),
        ("http://default:pw@clickhouse:8123/", "feedhouse"),
        ("https://u:p@ch.example.com:8443/analytics", "analytics"),  # the URL's database wins
    ],
)
def test_database_for(url: str, database: str) -> None:
    assert database_for(settings_module.load({}, clickhouse_url=url)) == database


@pytest.mark.parametrize("name", ["feedhouse", "_x1", "Events_2024"])
def test_identifiers_pass(name: str) -> None:
    assert check_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", "x; DROP TABLE y", "`x`"])
def test_anything_else_is_refused(name: str) -> None:
    with pytest.raises(SettingsError):
        check_identifier(name)


@pytest.mark.parametrize("url", ["postgres://x", "chdb://relative/path/db", "clickhouse:9000"])
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(SettingsError):
        get_client(settings_module.load({}, clickhouse_url=url))


def test_one_client_per_url_and_purpose(tmp_path: Path) -> None:
    current = settings_module.load({}, data_dir=tmp_path, clickhouse_database="fh_test")
    shared = get_client(current)
    assert get_client(current) is shared
    sink = get_client(current, purpose="sink")
    assert sink is not shared
    assert shared.database == sink.database == "fh_test"
    # Before the database exists queries fail; once created (by migrate), the same client works.
    with pytest.raises(DatabaseError, match="UNKNOWN_DATABASE"):
        shared.command("SELECT 1")
    shared.command("CREATE DATABASE fh_test", use_database=False)
    # Both handles reach the one engine of this process.
    shared.command("CREATE TABLE t (x UInt8) ENGINE = Memory")
    sink.insert("t", [[1]], column_names=["x"])
    assert shared.command("SELECT count() FROM t") == 1
    close_clients()
    assert get_client(current) is not shared


def test_queries_do_not_load_column_statistics(tmp_path: Path) -> None:
    # ClickHouse 26 loads a freshly merged part's statistics from disk on every query until its
    # cache refreshes: key lookups were slower for minutes after each merge or deletion rewrite.
    client = get_client(settings_module.load({}, data_dir=tmp_path, clickhouse_database="default"))
    assert client.query("SELECT toUInt8(getSetting('use_statistics'))").result_rows == [(0,)]


def test_short_reads_use_an_uncompressed_cache_of_the_configured_size(tmp_path: Path) -> None:
    # A timeline's next page reads the blocks its first page decompressed: chDB's engine starts
    # with FEEDHOUSE_CHDB_CACHE_MB of cache (its default is none), and every client uses it.
    close_clients()
    current = settings_module.load({}, data_dir=tmp_path, clickhouse_database="default", chdb_cache_mb=64)
    client = get_client(current)
    size = "SELECT value FROM system.server_settings WHERE name = 'uncompressed_cache_size'"
    assert client.query(size).result_rows == [(str(64 << 20),)]
    assert client.query("SELECT toUInt8(getSetting('use_uncompressed_cache'))").result_rows == [(1,)]
    close_clients()
