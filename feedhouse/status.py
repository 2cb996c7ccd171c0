"""One look at the whole stack: components, lag per topic, what is stored, disk used.

Served as JSON at ``GET /v1/status`` (admin token) and printed by ``feedhouse status``. Lag is
what each consumer group still has to read: events waiting for identity (the router), identity
commands waiting for the agents, records waiting for the sink. Counts are cheap approximations
(rows in active parts include duplicates not merged yet), so the page never scans the events.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaException, TopicPartition

from feedhouse.health import Health
from feedhouse.kafka import consumer_config
from feedhouse.settings import Settings

# consumer group suffix -> (what it does, the logical topics it reads)
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "identity-router": ("events waiting for identity", ("events",)),
    "identity": ("identity commands waiting for the agents", ("identity-commands", "identity-graph")),
    "sink": (
        "records waiting for the sink",
        ("events", "rejected", "identity-mapping", "identity-profiles", "identity-state", "identity-groups"),
    ),
}

# Profiles: distinct ids with events, less those merged into another profile (approximate:
# uniq, and profiles known only to the identity tables are not counted).
COUNTS_SQL = """
SELECT
    (SELECT count() FROM events) AS event_rows,
    (
        SELECT uniq(person_key) FROM events
        WHERE person_key != '' AND person_key NOT IN
        (SELECT id FROM id_mapping GROUP BY id HAVING argMax(profile_id, version) != id)
    ) AS profiles,
    (SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase()) AS bytes
"""


def lag(settings: Settings, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Per consumer group: its committed position against each topic's end, summed per topic."""
    report: dict[str, dict[str, Any]] = {}
    for suffix, (meaning, topics) in GROUPS.items():
        group = f"{settings.topic_prefix}{suffix}"
        consumer = Consumer(
            consumer_config(settings, group, **{"client.id": f"status-{uuid.uuid4().hex[:6]}"})
        )
        try:
            per_topic: dict[str, int] = {}
            for name in topics:
                topic = settings.topic(name)
                metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
                if metadata is None or metadata.error is not None:
                    continue
                partitions = [TopicPartition(topic, p) for p in metadata.partitions]
                committed = consumer.committed(partitions, timeout=timeout)
                behind = 0
                for position in committed:
                    low, high = consumer.get_watermark_offsets(position, timeout=timeout)
                    start = position.offset if position.offset >= 0 else low
                    behind += max(0, high - start)
                per_topic[name] = behind
            report[group] = {"meaning": meaning, "lag": per_topic, "total": sum(per_topic.values())}
        except KafkaException as exc:
            report[group] = {"meaning": meaning, "error": str(exc)}
        finally:
            consumer.close()
    return report


def stored(client: Client) -> dict[str, Any]:
    rows, profiles, size = client.query(COUNTS_SQL).result_rows[0]
    return {"event_rows": int(rows), "profiles_about": int(profiles), "clickhouse_bytes": int(size or 0)}


def disk(data_dir: Path) -> dict[str, int]:
    """Bytes under each part of the embedded data directory."""
    sizes: dict[str, int] = {}
    if not data_dir.exists():
        return sizes
    for part in sorted(data_dir.iterdir()):
        if not part.is_dir():
            continue
        total = 0
        for root, _, files in os.walk(part):
            for name in files:
                with contextlib.suppress(OSError):  # removed while we walked
                    total += os.lstat(os.path.join(root, name)).st_size
        sizes[part.name] = total
    return sizes


def status(
    settings: Settings,
    health: Health,
    client: Client,
    processes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything ``feedhouse status`` shows. Each section reports its own failure."""
    started = time.monotonic()
    components = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in health.report().items()}
    for name, info in (processes or {}).items():
        components.setdefault(name, {}).update(info)
    report: dict[str, Any] = {"ready": all(c.get("ok", False) for c in components.values())}
    report["components"] = components
    try:
        report["lag"] = lag(settings)
    except Exception as exc:
        report["lag"] = {"error": str(exc)}
    try:
        report["stored"] = stored(client)
    except Exception as exc:
        report["stored"] = {"error": str(exc)}
    report["disk"] = disk(settings.data_dir) if not settings.clickhouse_url else {}
    report["seconds"] = round(time.monotonic() - started, 3)
    return report


def render(report: dict[str, Any]) -> str:
    """The report as the text ``feedhouse status`` prints."""
    lines = [f"ready: {'yes' if report.get('ready') else 'NO'}", "", "components:"]
    for name, info in report.get("components", {}).items():
        mark = "up  " if info.get("ok") else "DOWN"
        lines.append(f"  {mark} {name:<16} {info.get('detail', '')}")
        if info.get("last_error") and not info.get("ok"):
            lines.append(f"       last error: {info['last_error']}")
    lines += ["", "lag (records not yet processed):"]
    for group, info in report.get("lag", {}).items():
        if isinstance(info, dict) and "lag" in info:
            detail = ", ".join(f"{topic} {count:,}" for topic, count in info["lag"].items())
            lines.append(f"  {group:<32} {info['total']:>10,}  ({info['meaning']}: {detail})")
        else:
            lines.append(f"  {group}: {info}")
    stored_info = report.get("stored", {})
    lines += ["", "stored:"]
    if "error" in stored_info:
        lines.append(f"  error: {stored_info['error']}")
    else:
        rows, profiles = stored_info.get("event_rows", 0), stored_info.get("profiles_about", 0)
        lines.append(f"  event rows {rows:,}, profiles ~{profiles:,}")
        lines.append(f"  ClickHouse {_size(stored_info.get('clickhouse_bytes', 0))}")
    if report.get("disk"):
        lines += ["", "disk (data directory):"]
        lines += [f"  {name:<12} {_size(size)}" for name, size in report["disk"].items()]
    return "\n".join(lines)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{count} B"
