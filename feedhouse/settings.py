"""The one settings module: every tunable of every Feedhouse process, read from the environment.

Settings are a frozen dataclass built once per process by :func:`load`. Each field documents the
environment variable it comes from; README.md lists them in a table generated from the same
``ENV`` mapping, so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from feedhouse.ids import DEFAULT_PLACEHOLDER_IDS


class SettingsError(ValueError):
    """An environment variable holds a value Feedhouse cannot use."""


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _placeholders(value: str) -> frozenset[str]:
    # Compared case-insensitively after stripping: "NULL", " undefined " are placeholders too.
    return frozenset(part.strip().lower() for part in value.split(","))


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"not a boolean: {value!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Feedhouse process can be told from outside. Build with :func:`load`."""

    # Kafka
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "feedhouse."
    events_partitions: int = 8
    replication_factor: int = 1
    produce_timeout_ms: int = 5000
    kafka_linger_ms: float = 2.0
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1500
    # Ingestion
    http_host: str = "127.0.0.1"
    http_port: int = 8088
    http_workers: int = 1
    write_keys: tuple[str, ...] = ("dev-write-key",)
    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_batch_events: int = 2500
    max_future_seconds: float = 23 * 3600
    webhook_max_request_bytes: int = 4 * 1024 * 1024
    webhook_api_keys: tuple[str, ...] = ()
    webhook_secret: str = ""
    placeholder_ids: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_PLACEHOLDER_IDS))
    # Identity worker
    identity_store: str = "memory://"
    changelog_seals: bool = False
    # Read API and administration
    read_token: str = "dev-read-token"
    admin_token: str = "dev-admin-token"
    # The app (pages at /) and Segment's Profile API
    space_id: str = "default"
    session_secret: str = ""
    session_hours: float = 12.0
    # Storage
    clickhouse_url: str = ""
    clickhouse_database: str = "feedhouse"
    clickhouse_cluster: str = ""
    chdb_cache_mb: int = 128
    data_dir: Path = Path(".feedhouse")
    kafka_port: int = 9092
    broker_storage: str = "disk"
    broker_disk_port: int = 9094
    port_wait_seconds: float = 30.0
    # Sink
    embedded_sink: bool = False
    sink_batch_rows: int = 20000
    sink_batch_seconds: float = 0.5
    # Privacy and data lifecycle
    purge_within_seconds: float = 24 * 3600
    retention_days: int = 0
    kafka_retention_hours: float = 7 * 24
    # Audiences and computed traits (evaluator, destinations)
    embedded_audiences: bool = False
    audiences_space_id: str = "spa_feedhouse"
    audiences_batch_seconds: float = 0.2
    audiences_expiry_seconds: float = 10.0
    destination_timeout_seconds: float = 10.0
    destination_give_up_seconds: float = 4 * 3600.0
    destination_batch_changes: int = 200
    destination_poll_seconds: float = 0.2
    # Operations
    log_level: str = "INFO"
    metrics_port: int = 0

    def topic(self, name: str) -> str:
        """The full topic name for one of Feedhouse's logical topics (events, rejected, ...)."""
        return f"{self.topic_prefix}{name}"

    @property
    def effective_clickhouse_url(self) -> str:
        """ClickHouse location: the configured URL, or embedded chDB under the data directory."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def effective_session_secret(self) -> bytes:
        """The key signing the app's session cookies: the setting, else one derived from the admin token.

        Derived (not random per process) so that every gateway worker accepts the same cookies;
        rotating the admin token therefore also signs everyone out.
        """
        if self.session_secret:
            return self.session_secret.encode()
        return hmac.new(self.admin_token.encode(), b"feedhouse-session-v1", hashlib.sha256).digest()

    def source_id(self, write_key: str) -> str:
        """A stable, non-secret label for a write key, stored with each event instead of the key."""
        return hashlib.sha256(write_key.encode()).hexdigest()[:12]


# Environment variable -> (field name, parser, description). The README's configuration table
# is this mapping; tests check that docker-compose only sets variables listed here.
ENV: Mapping[str, tuple[str, object, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", str, "Kafka bootstrap servers (host:port,...)."),
    "FEEDHOUSE_TOPIC_PREFIX": ("topic_prefix", str, "Prefix of every topic Feedhouse uses."),
    "FEEDHOUSE_EVENTS_PARTITIONS": ("events_partitions", int, "Partitions of the events topic."),
    "FEEDHOUSE_REPLICATION_FACTOR": ("replication_factor", int, "Replication factor of created topics."),
    "FEEDHOUSE_PRODUCE_TIMEOUT_MS": (
        "produce_timeout_ms",
        int,
        "How long the gateway waits for Kafka to acknowledge before answering 503.",
    ),
    "FEEDHOUSE_KAFKA_LINGER_MS": (
        "kafka_linger_ms",
        float,
        "How long producers gather records into one batch per partition (librdkafka linger.ms): larger"
        " batches cost the broker less per event, each acknowledgement waits up to this much longer.",
    ),
    "FEEDHOUSE_KAFKA_SESSION_TIMEOUT_MS": (
        "kafka_session_timeout_ms",
        int,
        "Consumer-group session timeout (Tansu joins after half of it).",
    ),
    "FEEDHOUSE_KAFKA_HEARTBEAT_MS": ("kafka_heartbeat_interval_ms", int, "Consumer heartbeat interval."),
    "FEEDHOUSE_HTTP_HOST": ("http_host", str, "Address the HTTP server binds."),
    "FEEDHOUSE_HTTP_PORT": ("http_port", int, "Port of the gateway (ingestion + read API)."),
    "FEEDHOUSE_HTTP_WORKERS": ("http_workers", int, "Gateway worker processes."),
    "FEEDHOUSE_WRITE_KEYS": ("write_keys", _csv, "Comma-separated write keys accepted for ingestion."),
    "FEEDHOUSE_MAX_EVENT_BYTES": ("max_event_bytes", int, "Largest single event (Segment: 32 KB)."),
    "FEEDHOUSE_MAX_REQUEST_BYTES": (
        "max_request_bytes",
        int,
        "Largest request body after decompression (Segment: 500 KB).",
    ),
    "FEEDHOUSE_MAX_BATCH_EVENTS": ("max_batch_events", int, "Most events in one batch (Segment: 2,500)."),
    "FEEDHOUSE_MAX_FUTURE_SECONDS": (
        "max_future_seconds",
        float,
        "Event timestamps further ahead of receivedAt than this are stored at receivedAt (a bad clock).",
    ),
    "FEEDHOUSE_WEBHOOK_MAX_REQUEST_BYTES": (
        "webhook_max_request_bytes",
        int,
        "Largest /v1/webhook body (Segment's Actions batches are bigger than SDK batches).",
    ),
    "FEEDHOUSE_WEBHOOK_API_KEYS": (
        "webhook_api_keys",
        _csv,
        "API keys accepted by /v1/webhook (Segment's Webhooks destination).",
    ),
    "FEEDHOUSE_WEBHOOK_SECRET": (
        "webhook_secret",
        str,
        "Shared secret: when set, /v1/webhook requires a valid X-Signature (HMAC-SHA1).",
    ),
    "FEEDHOUSE_PLACEHOLDER_IDS": (
        "placeholder_ids",
        _placeholders,
        "Comma-separated ids that never link or merge profiles (case-insensitive).",
    ),
    "FEEDHOUSE_IDENTITY_STORE": (
        "identity_store",
        str,
        "Faust table store of the identity worker: memory:// (rebuilt from changelogs) or rocksdb://.",
    ),
    "FEEDHOUSE_CHANGELOG_SEALS": (
        "changelog_seals",
        _bool,
        "Seal each batch of identity-table writes: needed on the embedded Tansu broker (its end"
        " offsets are off by one batch; `feedhouse dev` turns it on), not on Apache Kafka.",
    ),
    "FEEDHOUSE_READ_TOKEN": (
        "read_token",
        str,
        "Bearer token guarding the read API (and the app's sign-in).",
    ),
    "FEEDHOUSE_ADMIN_TOKEN": (
        "admin_token",
        str,
        "Bearer token guarding administration (definitions, destinations, regulations, status);"
        " it also reads.",
    ),
    "FEEDHOUSE_SPACE_ID": (
        "space_id",
        str,
        "The space id the Profile API answers to (/v1/spaces/{space_id}/collections/users/...).",
    ),
    "FEEDHOUSE_SESSION_SECRET": (
        "session_secret",
        str,
        "Key signing the app's session cookies (default: derived from the admin token).",
    ),
    "FEEDHOUSE_SESSION_HOURS": ("session_hours", float, "How long an app sign-in lasts."),
    "FEEDHOUSE_CLICKHOUSE_URL": (
        "clickhouse_url",
        str,
        "ClickHouse: http://user:pass@host:8123/db, or chdb:///abs/path (default: chDB in the data dir).",
    ),
    "FEEDHOUSE_CLICKHOUSE_DATABASE": (
        "clickhouse_database",
        str,
        "Database holding Feedhouse's tables (created by `feedhouse migrate`).",
    ),
    "FEEDHOUSE_CLICKHOUSE_CLUSTER": (
        "clickhouse_cluster",
        str,
        "A ClickHouse server's cluster (remote_servers) to shard and replicate the tables over:"
        " docs/scaling.md. Empty: one server (or chDB).",
    ),
    "FEEDHOUSE_CHDB_CACHE_MB": (
        "chdb_cache_mb",
        int,
        "chDB: MiB of decompressed data blocks kept for short reads (a timeline's next page reads the"
        " blocks of its first); 0 turns the cache off. A server uses its own uncompressed_cache_size.",
    ),
    "FEEDHOUSE_DATA_DIR": ("data_dir", Path, "Where embedded data (chDB, Faust tables) lives."),
    "FEEDHOUSE_KAFKA_PORT": ("kafka_port", int, "Port of the embedded Tansu broker (`feedhouse dev`)."),
    "FEEDHOUSE_BROKER_STORAGE": (
        "broker_storage",
        str,
        "Embedded broker storage: disk (kept in the data dir across restarts) or memory (wiped at start).",
    ),
    "FEEDHOUSE_PORT_WAIT_SECONDS": (
        "port_wait_seconds",
        float,
        "How long `feedhouse dev` waits for its ports to be free before giving up.",
    ),
    "FEEDHOUSE_BROKER_DISK_PORT": (
        "broker_disk_port",
        int,
        "Loopback port of the object store that is the embedded broker's disk.",
    ),
    "FEEDHOUSE_EMBEDDED_SINK": (
        "embedded_sink",
        _bool,
        "Run the sink inside the gateway process (required with embedded chDB, which one process owns).",
    ),
    "FEEDHOUSE_SINK_BATCH_ROWS": ("sink_batch_rows", int, "Sink closes a batch at this many rows..."),
    "FEEDHOUSE_SINK_BATCH_SECONDS": ("sink_batch_seconds", float, "...or after this many seconds."),
    "FEEDHOUSE_RETENTION_DAYS": (
        "retention_days",
        int,
        "Events (and rejected events) older than this many days are dropped from ClickHouse; 0 keeps them.",
    ),
    "FEEDHOUSE_KAFKA_RETENTION_HOURS": (
        "kafka_retention_hours",
        float,
        "retention.ms of the event topics Feedhouse creates (events, rejected, identity commands).",
    ),
    "FEEDHOUSE_PURGE_WITHIN_SECONDS": (
        "purge_within_seconds",
        float,
        "Deleted people's rows are physically removed from ClickHouse within this time (masked at once).",
    ),
    "FEEDHOUSE_EMBEDDED_AUDIENCES": (
        "embedded_audiences",
        _bool,
        "Run the audience evaluator and the destination senders inside the gateway process (with"
        " embedded chDB; else run `feedhouse audiences`).",
    ),
    "FEEDHOUSE_AUDIENCES_SPACE_ID": (
        "audiences_space_id",
        str,
        "context.personas.space_id (and namespace) of the messages sent for audiences and computed traits.",
    ),
    "FEEDHOUSE_AUDIENCES_BATCH_SECONDS": (
        "audiences_batch_seconds",
        float,
        "The evaluator gathers touched profiles for at most this long per pass.",
    ),
    "FEEDHOUSE_AUDIENCES_EXPIRY_SECONDS": (
        "audiences_expiry_seconds",
        float,
        "How often the evaluator looks for events that left a definition's time window.",
    ),
    "FEEDHOUSE_DESTINATION_TIMEOUT_SECONDS": (
        "destination_timeout_seconds",
        float,
        "Timeout of one request to a destination (then retried).",
    ),
    "FEEDHOUSE_DESTINATION_GIVE_UP_SECONDS": (
        "destination_give_up_seconds",
        float,
        "Retries of one delivery stop after this long; the messages go to the dead-letter topic"
        " (Segment: 4 hours).",
    ),
    "FEEDHOUSE_DESTINATION_BATCH_CHANGES": (
        "destination_batch_changes",
        int,
        "Most changes per request to a destination (two messages per audience change).",
    ),
    "FEEDHOUSE_DESTINATION_POLL_SECONDS": (
        "destination_poll_seconds",
        float,
        "How often an idle sender looks for new changes.",
    ),
    "FEEDHOUSE_LOG_LEVEL": ("log_level", str, "Log level (DEBUG, INFO, WARNING, ERROR)."),
    "FEEDHOUSE_METRICS_PORT": (
        "metrics_port",
        int,
        "Port for /metrics of worker and sink processes (0: pick a free port).",
    ),
}

_FIELD_NAMES = {f.name for f in fields(Settings)}
assert all(name in _FIELD_NAMES for name, _, _ in ENV.values()), "ENV names an unknown field"


def load(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``environ`` (default: ``os.environ``), then explicit ``overrides``."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for variable, (name, parse, _) in ENV.items():
        raw = env.get(variable)
        if raw is None:
            continue
        try:
            values[name] = parse(raw)  # type: ignore[operator]
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{variable}={raw!r}: {exc}") from exc
    values.update(overrides)
    settings = Settings(**values)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def to_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make another process load ``settings``."""
    env: dict[str, str] = {}
    for variable, (name, _, _) in ENV.items():
        value = getattr(settings, name)
        if isinstance(value, tuple | frozenset):
            value = ",".join(sorted(value) if isinstance(value, frozenset) else value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[variable] = str(value)
    return env


def _validate(settings: Settings) -> None:
    if not settings.write_keys:
        raise SettingsError("FEEDHOUSE_WRITE_KEYS must name at least one write key")
    for name in ("events_partitions", "replication_factor", "produce_timeout_ms", "max_event_bytes"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} must be positive")
    if settings.chdb_cache_mb < 0:
        raise SettingsError("FEEDHOUSE_CHDB_CACHE_MB must be 0 or more")
    if settings.broker_storage not in ("disk", "memory"):
        raise SettingsError("FEEDHOUSE_BROKER_STORAGE must be disk or memory")
    if not settings.read_token or not settings.admin_token:
        raise SettingsError("FEEDHOUSE_READ_TOKEN and FEEDHOUSE_ADMIN_TOKEN must not be empty")
    if settings.admin_token == settings.read_token or settings.admin_token in settings.write_keys:
        raise SettingsError("FEEDHOUSE_ADMIN_TOKEN must differ from the read token and every write key")
    if not 0 < settings.session_hours <= 24 * 31:
        raise SettingsError("FEEDHOUSE_SESSION_HOURS must be more than 0 and at most 744 (31 days)")
    if not settings.space_id or "/" in settings.space_id:
        raise SettingsError("FEEDHOUSE_SPACE_ID must be a non-empty path segment")
    if settings.clickhouse_cluster and not settings.clickhouse_url.startswith(("http://", "https://")):
        raise SettingsError(
            "FEEDHOUSE_CLICKHOUSE_CLUSTER needs a ClickHouse server (FEEDHOUSE_CLICKHOUSE_URL=http...)"
        )
    if settings.max_event_bytes > settings.max_request_bytes:
        raise SettingsError("FEEDHOUSE_MAX_EVENT_BYTES cannot exceed FEEDHOUSE_MAX_REQUEST_BYTES")
    if settings.embedded_sink and settings.http_workers > 1:
        raise SettingsError(
            "FEEDHOUSE_EMBEDDED_SINK needs FEEDHOUSE_HTTP_WORKERS=1 (chDB is owned by one process)"
        )
    if settings.embedded_audiences and settings.http_workers > 1:
        raise SettingsError(
            "FEEDHOUSE_EMBEDDED_AUDIENCES needs FEEDHOUSE_HTTP_WORKERS=1 (one evaluator writes changes)"
        )
    if settings.destination_batch_changes < 1 or settings.destination_timeout_seconds <= 0:
        raise SettingsError("FEEDHOUSE_DESTINATION_BATCH_CHANGES and _TIMEOUT_SECONDS must be positive")


def env_table() -> str:
    """The configuration table of README.md, as Markdown."""
    defaults = Settings()
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for variable, (name, _, doc) in ENV.items():
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            default = ",".join(default)
        elif isinstance(default, frozenset):
            default = "(built-in list)"
        rows.append(f"| `{variable}` | `{default}` | {doc} |")
    return "\n".join(rows)
