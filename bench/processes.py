"""Child processes of a benchmark, and what they cost: peak memory and CPU, read from /proc.

psutil is not a dependency: peak RSS is ``VmHWM`` of /proc/<pid>/status, CPU time the utime +
stime of /proc/<pid>/stat (per thread from /proc/<pid>/task/*), descendants from
/proc/<pid>/task/*/children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import ROOT
from feedhouse.settings import Settings, to_env


def child_env(current: Settings, **extra: str) -> dict[str, str]:
    """This process's environment plus what makes a Feedhouse child load ``current``."""
    return {**os.environ, **to_env(current), "PYTHONUNBUFFERED": "1", **extra}


class Child:
    """A child process (its own process group) whose output goes to a log file.

    Use as a context manager: on exit the whole group gets SIGTERM, then SIGKILL after a grace
    period. :meth:`memory` reads the peak RSS of the child and its descendants while alive.
    """

    def __init__(
        self, label: str, argv: Sequence[str], env: dict[str, str], log_path: Path, root: Path = ROOT
    ) -> None:
        self.label = label
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            list(argv), env=env, cwd=root, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.memory_seen: list[dict[str, Any]] = []
        self.url = ""  # set by whoever gives the child an HTTP port

    @classmethod
    def feedhouse(
        cls, label: str, command: Sequence[str], current: Settings, workdir: Path, **env: str
    ) -> Child:
        """``python -m feedhouse.cli <command>`` configured by ``current``."""
        argv = [sys.executable, "-m", "feedhouse.cli", *command]
        return cls(label, argv, child_env(current, **env), workdir / f"{label.replace(' ', '_')}.log")

    @classmethod
    def http(
        cls, label: str, argv: Sequence[str], env: dict[str, str], workdir: Path, port: int, root: Path = ROOT
    ) -> Child:
        """A child serving HTTP on 127.0.0.1:``port`` (``child.url``), started in ``root``."""
        child = cls(label, argv, env, workdir / f"{label.replace(' ', '_')}.log", root)
        child.url = f"http://127.0.0.1:{port}"
        return child

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """Raise with the end of the log when the child died."""
        if not self.alive():
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.label} exited with {self.process.returncode}:\n{tail}")

    def log_contains(self, text: str) -> bool:
        return text in self.log_path.read_text(errors="replace")

    def memory(self) -> list[dict[str, Any]]:
        """Peak RSS (VmHWM) of the child and every descendant, now; remembered for :meth:`stop`."""
        seen = tree_memory(self.pid, self.label)
        if seen:
            self.memory_seen = seen
        return self.memory_seen

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            self.memory()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # stragglers of the group, if any
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def wait_http_ok(url: str, child: Child | None = None, timeout: float = 60.0) -> None:
    """Wait until ``GET url`` answers 200 (and ``child`` is still alive)."""
    import httpx

    def ok() -> bool:
        if child is not None:
            child.check()
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ok, timeout, f"{url} answering 200", interval=0.1)


# ---- memory (psutil-free: /proc) -------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue += _children(current)
    return tree


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size) of ``pid`` in MiB, or None when it is gone."""
    value = _status(pid).get("VmHWM")
    return None if value is None else int(value.split()[0]) / 1024


def tree_memory(pid: int, label: str) -> list[dict[str, Any]]:
    """Peak RSS of every process in ``pid``'s tree, labelled with its command."""
    rows = []
    for member in process_tree(pid):
        peak = peak_rss_mb(member)
        if peak is None:
            continue
        try:
            cmdline = Path(f"/proc/{member}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            cmdline = "?"
        rows.append(
            {"process": label, "pid": member, "command": cmdline[:160], "peak_rss_mb": round(peak, 1)}
        )
    return rows


def own_memory(label: str) -> dict[str, Any]:
    """Peak RSS of this (benchmark) process, for components run in-process."""
    peak = peak_rss_mb(os.getpid()) or 0.0
    return {
        "process": label,
        "pid": os.getpid(),
        "command": "(in the benchmark process)",
        "peak_rss_mb": round(peak, 1),
    }


# ---- CPU (where the cores went during a phase) -----------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (from /proc/<pid>/stat)."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def thread_cpu_seconds(pid: int) -> dict[tuple[int, int], tuple[str, float]]:
    """(pid, tid) -> (thread name, CPU seconds) over ``pid``'s tree.

    librdkafka names its threads (rdk:*), chDB its own; Python threads all show as "python",
    so they are told apart as main thread and others.
    """
    threads: dict[tuple[int, int], tuple[str, float]] = {}
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    name = (task / "comm").read_text().strip()
                    if name.startswith("rdk:broker"):
                        name = "rdk:broker*"
                    elif name.startswith(("python", "uvicorn")):
                        name = "python main thread" if task.name == str(member) else "python other threads"
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    seconds = (int(fields[11]) + int(fields[12])) / _TICKS
                    threads[(member, int(task.name))] = (name, seconds)
    return threads


class CpuMeter:
    """Cores used by each named process tree during a ``with`` block, and by everything else.

    ``cores`` maps each label to its average cores over the block, plus "machine (all
    processes)" and "everything else" (the load generator, this process, other users).
    ``threads`` splits the first process tree's cores by thread name.
    """

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes
        self.cores: dict[str, float] = {}
        self.threads: dict[str, float] = {}
        self._first = next(iter(processes.values()))

    def __enter__(self) -> CpuMeter:
        self._start = {label: cpu_seconds(pid) for label, pid in self.processes.items()}
        self._threads = thread_cpu_seconds(self._first)
        self._machine = machine_busy_seconds()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        wall = max(1e-9, time.perf_counter() - self._wall)
        for label, pid in self.processes.items():
            self.cores[label] = round((cpu_seconds(pid) - self._start[label]) / wall, 2)
        # By thread id, then by name. chDB renames a Python thread while it runs a query in it
        # (the embedded sink's inserts), so a thread that was "python" at either end is Python's.
        by_name: dict[str, float] = {}
        for key, (name, seconds) in thread_cpu_seconds(self._first).items():
            first_name, before = self._threads.get(key, (name, 0.0))
            label = first_name if first_name.startswith("python") or not name.startswith("python") else name
            by_name[label] = by_name.get(label, 0.0) + seconds - before
        self.threads = {name: round(used / wall, 2) for name, used in by_name.items() if used / wall >= 0.01}
        machine_cores = (machine_busy_seconds() - self._machine) / wall
        self.cores["everything else"] = round(max(0.0, machine_cores - sum(self.cores.values())), 2)
        self.cores["machine (all processes)"] = round(machine_cores, 2)

    def line(self) -> str:
        first = next(iter(self.processes))
        threads = ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(self.threads.items()))
        used = ", ".join(f"{label} {cores:.2f}" for label, cores in self.cores.items())
        return f"{used} ({first} by thread: {threads})"

    def micros_per(self, label: str, rate: float) -> float | None:
        """CPU microseconds ``label`` spent per unit of ``rate`` (e.g. per event): load-independent."""
        return round(self.cores[label] / rate * 1e6, 1) if rate else None

    def to_json(self) -> dict[str, Any]:
        return {"cores": self.cores, "threads_of_first": self.threads}
