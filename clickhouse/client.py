"""The one ClickHouse client factory: embedded chDB or a ClickHouse server, behind one API.

``FEEDHOUSE_CLICKHOUSE_URL`` (``settings.effective_clickhouse_url``) picks the backend:

- ``chdb:///abs/path``: ClickHouse in this process (chDB) through clickhouse-connect's own chDB
  backend. chDB locks its data directory, so one process per path; within the process any
  number of clickhouse-connect clients (each its own engine handle) may share the engine.
- ``http(s)://user:pass@host:8123[/database]``: a ClickHouse server. A database in the URL
  path wins over ``FEEDHOUSE_CLICKHOUSE_DATABASE``.

Clients are cached: :func:`get_client` returns the same client for the same URL and purpose,
so a process opens the engine once and reuses connections.

Thread safety (checked in clickhouse-connect 1.12): the chDB backend serialises the calls made
through one client with a per-client lock (a handle with an open result stream silently returns
empty results to a second caller, so it must); chDB releases the GIL while a query runs, and
calls on *different* clients run in parallel. The HTTP client is thread-safe only without a
session id, and it generates one by default, so we turn that off. Consequence: a shared client
is safe from many threads, but a long insert blocks every reader of the same client; the sink
therefore asks for its own ``purpose="sink"`` client so the read API's queries never wait
behind a batch insert (measured: reader p95 185 ms with one shared chDB client during inserts,
39 ms with separate handles).
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver import options as driver_options
from clickhouse_connect.driver.client import Client

from feedhouse.settings import Settings, SettingsError

# Feedhouse inserts rows, never DataFrames: clickhouse-connect would import pandas on a process's
# first insert only to check for one (most of a second and tens of MiB per process: the sink's
# peak RSS in docs/benchmarks.md, "Privacy"). Telling it pandas is absent skips that.
driver_options.pd = None
driver_options.pd_time_test = None

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_clients: dict[tuple[str, str], Client] = {}
_clients_lock = threading.Lock()


def database_for(settings: Settings) -> str:
    """The database holding Feedhouse's tables: the URL's path if it names one, else the setting."""
    parsed = urlsplit(settings.effective_clickhouse_url)
    name = settings.clickhouse_database
    if parsed.scheme in ("http", "https") and parsed.path.strip("/"):
        name = unquote(parsed.path.strip("/"))
    return check_identifier(name)


def check_identifier(name: str) -> str:
    """``name`` if it is a plain identifier; it is spliced into SQL, so nothing else is accepted."""
    if not _IDENTIFIER.match(name):
        raise SettingsError(f"not a valid ClickHouse database name: {name!r} (letters, digits, _)")
    return name


def get_client(settings: Settings, purpose: str = "shared") -> Client:
    """The process's client for ``settings``' ClickHouse; one per (URL, purpose), created on first use.

    Its default database is :func:`database_for` (set without checking it exists, so that a
    process started before ``feedhouse migrate`` works as soon as the database appears).
    """
    url = settings.effective_clickhouse_url
    key = (url, purpose)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _connect(url, settings.chdb_cache_mb)
            client.database = database_for(settings)
            # Short reads (key lookups, a timeline's pages) take decompressed blocks from the
            # uncompressed cache when it has them; large reads bypass it by themselves
            # (merge_tree_max_rows_to_use_cache). chDB's is sized at start (_connect); a
            # server's is its own uncompressed_cache_size (0, off, unless configured).
            client.set_client_setting("use_uncompressed_cache", 1)
            if "use_statistics" in client.server_settings:
                # ClickHouse 26 builds column statistics in every merge and mutation, and its
                # planner loads them from disk, on every query, for each part its statistics
                # cache has not picked up yet (refreshed every 300 s): after a merge or a
                # deletion's rewrite, key lookups read that long slower (docs/benchmarks.md,
                # "Privacy"). Feedhouse's queries are key lookups the statistics do not improve.
                client.set_client_setting("use_statistics", 0)
            if settings.clickhouse_cluster:
                # Joins of two sharded tables (ids resolved through id_mapping) read the right
                # side from every shard once, not once per shard (docs/scaling.md).
                client.set_client_setting("distributed_product_mode", "global")
                # An insert returns once its rows are on their shards (not queued on this
                # server): the sink commits its offsets after it, so the rows must be there.
                client.set_client_setting("distributed_foreground_insert", 1)
            _clients[key] = client
        return client


def close_clients() -> None:
    """Close every cached client (releases chDB's engine and its directory lock when the last goes)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()


def _connect(url: str, cache_mb: int = 0) -> Client:
    parsed = urlsplit(url)
    if parsed.scheme == "chdb":
        # chdb:///abs/path -> path "/abs/path"; chdb://memory -> throwaway in-memory engine.
        location = parsed.path if not parsed.netloc else parsed.netloc
        if location not in ("memory", ":memory:") and not location.startswith("/"):
            raise SettingsError(f"chDB needs an absolute path: chdb:///abs/path, not {url!r}")
        # Engine start-up arguments: they take effect with the engine's first connection.
        options = {"uncompressed_cache_size": str(cache_mb << 20)}
        return clickhouse_connect.get_client(
            dsn=f"chdb://{location}" if parsed.netloc else url, chdb_options=options
        )
    if parsed.scheme in ("http", "https"):
        return clickhouse_connect.get_client(
            interface=parsed.scheme,
            host=parsed.hostname or "localhost",
            port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
            username=unquote(parsed.username or "default"),
            password=unquote(parsed.password or ""),
            # A session id makes the client refuse concurrent queries; we share it across threads.
            autogenerate_session_id=False,
            # Parameters in the body, not the URL: the audience evaluator binds arrays of
            # thousands of ids, past what a URL may hold.
            form_encode_query_params=True,
        )
    raise SettingsError(f"unsupported ClickHouse URL {url!r}: use chdb:///abs/path or http(s)://host:8123")
