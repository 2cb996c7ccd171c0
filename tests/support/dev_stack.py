"""Test helper: a ``feedhouse dev`` stack as a user runs it, that can be stopped and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedhouse import settings as settings_module
from feedhouse.broker import free_port
from feedhouse.settings import Settings, to_env
from feedhouse.supervisor import port_free


class DevStack:
    """``feedhouse dev`` on free ports and a data directory of its own, in its own process group."""

    def __init__(self, data_dir: Path, log_path: Path, **overrides: Any) -> None:
        values: dict[str, Any] = {
            "http_port": free_port(),
            "kafka_port": free_port(),
            "broker_disk_port": free_port(),
            "data_dir": data_dir,
            "port_wait_seconds": 30.0,
            **overrides,
        }
        self.settings: Settings = settings_module.load({}, **values)
        self.url = f"http://127.0.0.1:{self.settings.http_port}"
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ports(self) -> list[int]:
        return [self.settings.http_port, self.settings.kafka_port, self.settings.broker_disk_port]

    def start(self, *args: str, timeout: float = 120.0) -> DevStack:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "feedhouse.cli", "dev", *args],
                env={**os.environ, **to_env(self.settings)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the test can SIGKILL all of it at once
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None:
                pytest.fail(f"feedhouse dev exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"feedhouse dev not ready after {timeout} s:\n{self.tail()}")
            time.sleep(0.25)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        """Ctrl-C (or ``sig``) to the stack; returns its exit code once every port is free."""
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self._await_ports_free()
        return code

    def kill(self) -> None:
        """SIGKILL of the whole process group: no shutdown, no commits, no goodbyes."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._await_ports_free()

    def _await_ports_free(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(port_free(port) for port in self.ports):
            if time.monotonic() > deadline:
                pytest.fail(f"ports {self.ports} still held {timeout} s after the stack stopped")
            time.sleep(0.1)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def read(self, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.settings.read_token}"}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=30)

    def status(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.settings.admin_token}"}
        response = httpx.get(f"{self.url}/v1/status", headers=headers, timeout=60)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def timeline(self, identifier: str) -> list[dict[str, Any]]:
        """Every event of a profile, all pages, hidden ones included."""
        events: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"hidden": "true", "limit": 500}
            if cursor:
                params["cursor"] = cursor
            response = self.read(f"/v1/profiles/{identifier}/timeline", **params)
            if response.status_code == 404:
                return events  # not known (yet)
            body = response.json()
            events += body["events"]
            cursor = body["next"]
            if cursor is None:
                return events

    def snapshot(self, identifiers: list[str]) -> dict[str, Any]:
        """What a support agent sees of these people: profiles and whole timelines."""
        result: dict[str, Any] = {}
        for identifier in identifiers:
            response = self.read(f"/v1/profiles/{identifier}")
            result[identifier] = {
                "status": response.status_code,
                "profile": response.json(),
                "timeline": self.timeline(identifier) if response.status_code == 200 else [],
            }
        return result
