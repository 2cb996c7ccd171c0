"""The shared harness of every benchmark: sizes, the embedded stack, results and the machine.

Each benchmark module (``python -m bench.<name>``) builds a :class:`Result` (figures paired with
the ceiling measured in the same run, peak memory of the processes involved, raw details) and
calls :meth:`Result.save`, which writes ``bench/results/<name>.json`` for the runner and the docs.
Child processes, memory and CPU are in ``bench.processes``; generated events and Kafka helpers
in ``bench.traffic``; plots in ``bench.plots``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from feedhouse import settings as settings_module
from feedhouse.broker import EmbeddedBroker, tansu_binary
from feedhouse.kafka import ensure_topics
from feedhouse.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", ROOT / "bench" / "results"))
WRITE_KEY = "bench-write-key"
READ_TOKEN = "bench-read-token"


def stop_on_sigterm() -> None:
    """Turn SIGTERM (the runner's time limit) into SystemExit, so every ``finally`` runs and
    the brokers and servers a benchmark started are stopped, not orphaned."""

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


# ---- sizes -----------------------------------------------------------------------------------


def scale() -> float:
    """``BENCH_SCALE`` (default 1): multiplies every default size and duration."""
    raw = os.environ.get("BENCH_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"BENCH_SCALE must be a number, not {raw!r}") from None
    if value <= 0:
        raise SystemExit("BENCH_SCALE must be positive")
    return value


def scaled(default: float, minimum: float = 1) -> int:
    """``default`` times :func:`scale`, at least ``minimum``, as an int (counts, seconds)."""
    return int(max(minimum, round(default * scale())))


# ---- the embedded stack ----------------------------------------------------------------------


@contextlib.contextmanager
def bench_stack(name: str, **overrides: Any) -> Iterator[tuple[Settings, Path, EmbeddedBroker]]:
    """A fresh Tansu broker, a temporary data directory and settings on both.

    Topics get a unique prefix (also the consumer groups' prefix) and are created with their
    partition counts. ClickHouse is chDB in the temporary directory unless
    ``FEEDHOUSE_CLICKHOUSE_URL`` names a server; then a database of its own is used.
    Everything is stopped and removed on exit; if the benchmark failed, the processes' logs are
    kept in ``bench/results/logs/<name>/`` first.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        workdir = Path(tmp)
        broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
        try:
            values: dict[str, Any] = {
                "kafka_bootstrap_servers": broker.bootstrap,
                "topic_prefix": f"bench{uuid.uuid4().hex[:8]}.",
                "data_dir": workdir / "data",
                "write_keys": (WRITE_KEY,),
                "read_token": READ_TOKEN,
                "log_level": "WARNING",
                "changelog_seals": True,  # the benchmarks' broker is Tansu, as in `feedhouse dev`
            }
            server = os.environ.get("FEEDHOUSE_CLICKHOUSE_URL", "")
            if server:
                values["clickhouse_url"] = server
                values["clickhouse_database"] = f"bench_{uuid.uuid4().hex[:8]}"
            values.update(overrides)
            current = settings_module.load({}, **values)
            current.data_dir.mkdir(parents=True, exist_ok=True)
            ensure_topics(current)
            try:
                yield current, workdir, broker
            except BaseException:
                keep_logs(workdir, name)
                raise
            if server:
                drop_database(current)
        finally:
            broker.close()


def keep_logs(workdir: Path, name: str) -> None:
    """Copy the ``*.log`` files of a failed run out of its temporary directory."""
    import shutil

    target = RESULTS_DIR / "logs" / name
    target.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy2(log, target / log.name)
    print(f"logs of the failed run: {target}", file=sys.stderr)


def drop_database(current: Settings) -> None:
    """Remove a benchmark's own database from a ClickHouse server."""
    from feedhouse.clickhouse.client import close_clients, database_for, get_client

    get_client(current, purpose="bench-cleanup").command(f"DROP DATABASE IF EXISTS `{database_for(current)}`")
    close_clients()


# ---- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ---- results ---------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured figure with the ceiling measured in the same run, and the design target.

    ``better`` says which way is good: "higher" (throughput) or "lower" (latency). A target is
    met when the value is on the good side of it.
    """

    stage: str
    metric: str
    value: float | None
    unit: str
    ceiling: float | None = None
    ceiling_label: str = ""
    target: float | None = None
    better: str = "higher"
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """value / ceiling for throughputs, ceiling / value for latencies (1.0 = at the ceiling)."""
        if self.value is None or self.ceiling is None or not self.value or not self.ceiling:
            return None
        return self.value / self.ceiling if self.better == "higher" else self.ceiling / self.value

    @property
    def target_met(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value < self.target

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["ratio"] = self.ratio
        data["target_met"] = self.target_met
        return data


@dataclass
class Result:
    """What one benchmark run found. :meth:`save` writes ``bench/results/<name>.json``."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started_at": datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds"),
            "seconds": round(time.time() - self.started, 1),
            "scale": scale(),
            "params": self.params,
            "figures": [figure.to_json() for figure in self.figures],
            "memory": self.memory,
            "details": self.details,
            "plots": self.plots,
        }

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_bytes(
            orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        )
        print(f"\nresults: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        for plot in self.plots:
            print(f"plot:    {plot}")
        return path


def load_result(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def fmt(value: float | None, unit: str = "") -> str:
    """A figure for a table: thousands separators, ms with one decimal, ratios as x0.00."""
    if value is None:
        return "n/a"
    if unit in ("ms", "s"):
        return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.0f} {unit}".strip()


def print_table(result: Result) -> None:
    """The short table every benchmark prints at the end."""
    rows = [("stage", "figure", "value", "ceiling (same run)", "ratio", "target")]
    for f in result.figures:
        target = "" if f.target is None else ("≥ " if f.better == "higher" else "< ") + fmt(f.target, f.unit)
        if f.target_met is not None:
            target += " ok" if f.target_met else " MISSED"
        ceiling = f"{fmt(f.ceiling, f.unit)} {f.ceiling_label}".strip() if f.ceiling is not None else ""
        rows.append((f.stage, f.metric, fmt(f.value, f.unit), ceiling, fmt(f.ratio, "x"), target))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for entry in result.memory:
        command = entry["command"].replace(sys.executable, "python").replace(str(ROOT) + "/", "")
        print(f"  peak RSS {entry['peak_rss_mb']:>7.1f} MiB  {entry['process']:<16} {command[:70]}")


# ---- the machine -----------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _command_version(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0].strip() if text else "unavailable"


def machine() -> dict[str, Any]:
    """Cores, CPU, memory and the versions of the parts under test, read now."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        total = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        memory_gib = round(int(total) / 1024 / 1024, 1)
    import confluent_kafka

    try:
        tansu = _command_version([str(tansu_binary()), "--version"])
    except Exception:
        tansu = "unavailable"
    chdb_engine = _command_version(
        [
            sys.executable,
            "-c",
            "import chdb; print(chdb.query('SELECT version()', 'CSV').bytes().decode().strip())",
        ]
    ).strip('"')
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "tansu": tansu,
        "chdb": f"{_version('chdb')} (ClickHouse {chdb_engine})",
        "confluent_kafka": f"{_version('confluent-kafka')} (librdkafka {confluent_kafka.libversion()[0]})",
        "clickhouse_connect": _version("clickhouse-connect"),
        "faust_streaming": _version("faust-streaming"),
        "starlette": _version("starlette"),
        "uvicorn": _version("uvicorn"),
        "fastavro": _version("fastavro"),
        "orjson": _version("orjson"),
        "wrk": " ".join(_command_version(["wrk", "--version"]).split()[:2])
        if _which("wrk")
        else "not installed",
    }


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)
