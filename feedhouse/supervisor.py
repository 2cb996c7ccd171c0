"""Child processes of ``feedhouse dev``: started in order, watched, restarted when they die.

Each child is described by a :class:`ChildSpec`. Before a child starts, the ports it will
listen on must be free: a previous instance still shutting down is waited for, anything else
holding a port fails the start with a message naming it (a broker that cannot bind would
otherwise panic and leave the stack half alive). A child that exits unasked is logged,
counted (``feedhouse_dev_restarts_total{component}``) and restarted after an exponential
backoff; one that keeps dying (``crash_limit`` exits within ``crash_window`` seconds) is
reported *failing*, which makes ``/readyz`` answer 503 naming it, and is still retried at the
longest backoff. Children die with their parent (``PR_SET_PDEATHSIG``), so a SIGKILLed
``feedhouse dev`` leaves no orphans.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import Counter

from feedhouse.broker import die_with_parent
from feedhouse.retry import Backoff

log = logging.getLogger(__name__)

RESTARTS = Counter(
    "feedhouse_dev_restarts_total", "Child processes of feedhouse dev restarted after dying.", ["component"]
)


class StartError(RuntimeError):
    """A child could not be started (a port held by something else, or it never became ready)."""


@dataclass(frozen=True)
class ChildSpec:
    """How to run one child: its command, environment, log file, ports and readiness check."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    log_path: Path
    ports: tuple[int, ...] = ()
    ready: Callable[[], bool] | None = None  # polled after start, until True
    ready_timeout: float = 30.0


@dataclass
class ChildState:
    """What the supervisor knows of one child (read by /readyz and ``feedhouse status``)."""

    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    exits: deque[float] = field(default_factory=lambda: deque(maxlen=32))
    last_exit: str = ""
    restart_at: float | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` now.

    With SO_REUSEADDR, as uvicorn and Tansu bind: connections of a previous run lingering in
    TIME_WAIT do not count, a process still listening (or bound) does.
    """
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on ``port``."""
    try:
        with socket.create_connection((host, port), timeout=0.3):
            return True
    except OSError:
        return False


def wait_for_ports(ports: Sequence[int], timeout: float, what: str) -> None:
    """Wait until every port in ``ports`` is free; :class:`StartError` naming them otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        taken = [port for port in ports if not port_free(port)]
        if not taken:
            return
        if time.monotonic() > deadline:
            raise StartError(
                f"{what}: port(s) {', '.join(map(str, taken))} on 127.0.0.1 still in use after"
                f" {timeout:.0f} s; stop what holds them or choose other ports"
                " (FEEDHOUSE_HTTP_PORT, FEEDHOUSE_KAFKA_PORT, FEEDHOUSE_BROKER_DISK_PORT)"
            )
        time.sleep(0.2)


class Supervisor:
    """Starts children in order and keeps them running until :meth:`stop`."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        backoff: Backoff | None = None,
        crash_window: float = 60.0,
        crash_limit: int = 5,
        port_timeout: float = 30.0,
    ) -> None:
        self.children = [ChildState(spec) for spec in specs]
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.crash_window = crash_window
        self.crash_limit = crash_limit
        self.port_timeout = port_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every child in order, each once ready; then watch them on a thread."""
        try:
            for child in self.children:
                self._launch(child)
                self._await_ready(child)
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._watch, name="feedhouse-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop watching, then stop the children in reverse order (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for child in reversed(self.children):
            process = child.process
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    # ---- one child ------------------------------------------------------------------------

    def _launch(self, child: ChildState) -> None:
        spec = child.spec
        wait_for_ports(spec.ports, self.port_timeout, spec.name)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as output:
            child.process = subprocess.Popen(
                list(spec.argv),
                env={**os.environ, **spec.env},
                stdout=output,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C to `feedhouse dev`'s group reaches the parent, which
                # stops the children in order; the death signal covers a parent killed hard.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        child.started_at = time.monotonic()
        log.info("started", extra={"component": spec.name, "pid": child.process.pid})

    def _await_ready(self, child: ChildState) -> None:
        spec = child.spec
        if spec.ready is None:
            return
        deadline = time.monotonic() + spec.ready_timeout
        while not spec.ready():
            process = child.process
            if process is not None and process.poll() is not None:
                raise StartError(f"{spec.name} exited with {process.returncode} at start: {self._tail(spec)}")
            if time.monotonic() > deadline:
                raise StartError(
                    f"{spec.name} not ready after {spec.ready_timeout:.0f} s: {self._tail(spec)}"
                )
            time.sleep(0.05)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            for child in self.children:
                with self._lock:
                    self._check(child, now)

    def _check(self, child: ChildState, now: float) -> None:
        process = child.process
        if child.restart_at is None:
            if process is None or process.poll() is None:
                return
            child.exits.append(now)
            child.last_exit = f"exited with {process.returncode}: {self._tail(child.spec)}"
            recent = sum(1 for moment in child.exits if now - moment <= self.crash_window)
            delay = self.backoff.delay(recent)
            child.restart_at = now + delay
            log.error(
                "child died; restarting",
                extra={"component": child.spec.name, "code": process.returncode, "restart_in_s": delay},
            )
            return
        if now < child.restart_at:
            return
        try:
            self._launch(child)
        except StartError as exc:  # its port is not free yet: try again later
            child.last_exit = str(exc)
            child.restart_at = now + self.backoff.maximum
            return
        child.restart_at = None
        child.restarts += 1
        RESTARTS.labels(child.spec.name).inc()

    # ---- what it knows --------------------------------------------------------------------

    def failing(self, child: ChildState) -> bool:
        now = time.monotonic()
        return sum(1 for moment in child.exits if now - moment <= self.crash_window) >= self.crash_limit

    def health(self) -> dict[str, tuple[bool, str]]:
        """Per child: (ok, detail). Not ok while it is down or when it keeps failing."""
        report: dict[str, tuple[bool, str]] = {}
        with self._lock:
            for child in self.children:
                name, process = child.spec.name, child.process
                if self.failing(child):
                    report[name] = (False, f"keeps failing ({child.restarts} restarts): {child.last_exit}")
                elif process is None or process.poll() is not None:
                    report[name] = (False, f"down, restarting: {child.last_exit}")
                else:
                    report[name] = (True, f"running (pid {process.pid}, {child.restarts} restarts)")
        return report

    def status(self) -> dict[str, dict[str, object]]:
        """Per child, for ``feedhouse status``: up, pid, uptime, restarts, last error."""
        now = time.monotonic()
        report: dict[str, dict[str, object]] = {}
        with self._lock:
            for child in self.children:
                report[child.spec.name] = {
                    "up": child.running,
                    "failing": self.failing(child),
                    "pid": child.process.pid if child.process is not None and child.running else None,
                    "uptime_s": round(now - child.started_at, 1) if child.running else 0.0,
                    "restarts": child.restarts,
                    "last_error": child.last_exit or None,
                    "log": str(child.spec.log_path),
                }
        return report

    def child(self, name: str) -> ChildState:
        return next(child for child in self.children if child.spec.name == name)

    @staticmethod
    def _tail(spec: ChildSpec, limit: int = 300) -> str:
        try:
            with open(spec.log_path, "rb") as output:
                output.seek(0, os.SEEK_END)
                output.seek(max(0, output.tell() - 4096))
                lines = [line for line in output.read().decode(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return lines[-1][-limit:] if lines else ""
