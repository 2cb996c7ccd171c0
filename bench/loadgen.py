"""HTTP load from separate processes: ``wrk`` with a Lua script when installed, else Python.

Both send POST requests cycling through pre-built JSON bodies over keep-alive connections, and
report requests, non-2xx answers, rate, and latency percentiles.

* :func:`ensure_wrk` finds ``wrk``, or installs Debian's package when running as root
  (``BENCH_NO_INSTALL=1`` forbids it); wrk is a C event loop, so on a small machine it takes
  far less CPU from the server under test than a Python client would.
* The Python fallback (``python -m bench.loadgen``, one process per ``processes``) uses asyncio
  streams on raw sockets. It also has an open-loop mode (``rate``: requests per second) that
  wrk lacks, used for the background load of the end-to-end benchmark, and a ``unique`` mode
  that makes every pass over the bodies carry new messageIds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import percentile

WRK_SCRIPT = r"""
-- Cycles through the request bodies of the file named by the first script argument.
local bodies = {}
local index = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    bodies[#bodies + 1] = line
  end
  file:close()
  index = math.random(#bodies)
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
      .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class LoadResult:
    """What a load run measured (latencies in milliseconds)."""

    tool: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    status_counts: dict[str, int] | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok_rps(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["rps"] = round(self.rps, 1)
        data["ok_rps"] = round(self.ok_rps, 1)
        return data


def basic_auth(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


def ensure_wrk() -> str | None:
    """The path of ``wrk``; installs Debian's ``wrk`` package if missing and allowed. None if absent."""
    found = shutil.which("wrk")
    if found or os.environ.get("BENCH_NO_INSTALL") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("wrk not found: installing Debian's wrk package (BENCH_NO_INSTALL=1 to skip)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "wrk"]
    for steps in ([install], [["apt-get", "update", "-qq"], install]):
        for argv in steps:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(argv, env=env, capture_output=True, timeout=300, check=False)
        found = shutil.which("wrk")
        if found:
            return found
    print("could not install wrk: using the Python load generator", flush=True)
    return None


def run_load(
    url: str,
    bodies: list[bytes],
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    headers: dict[str, str] | None = None,
    tool: str = "auto",
    rate: float | None = None,
    unique: bool = False,
    processes: int = 1,
) -> LoadResult:
    """POST ``bodies`` (cycled) to ``url`` for ``seconds`` from separate processes.

    ``tool``: "wrk", "python" or "auto" (wrk when available and neither ``rate`` nor
    ``unique`` is asked, since only the Python generator does those).
    """
    headers = {"Content-Type": "application/json", **(headers or {})}
    wrk = ensure_wrk() if tool in ("auto", "wrk") and rate is None and not unique else None
    if tool == "wrk" and wrk is None:
        raise RuntimeError("wrk asked for but not available (and rate/unique need the Python generator)")
    if wrk is not None:
        return _run_wrk(wrk, url, bodies, seconds, connections, threads, headers)
    return _run_python(url, bodies, seconds, connections, headers, rate, unique, max(1, processes))


def _run_wrk(
    wrk: str,
    url: str,
    bodies: list[bytes],
    seconds: float,
    connections: int,
    threads: int,
    headers: dict[str, str],
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
        script.write_text(f'wrk.method = "POST"\n{header_lines}{WRK_SCRIPT}')
        body_file = Path(tmp) / "bodies.txt"
        body_file.write_bytes(b"\n".join(body.replace(b"\n", b" ") for body in bodies) + b"\n")
        argv = [
            wrk,
            f"-t{threads}",
            f"-c{max(connections, threads)}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
            "--",
            str(body_file),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary (exit {done.returncode}): {done.stdout}\n{done.stderr}")
    raw = orjson.loads(line.removeprefix("BENCHJSON "))
    errors = raw["status_errors"] + raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
    errors += raw["timeouts"]
    return LoadResult(
        tool="wrk",
        requests=raw["requests"],
        errors=errors,
        seconds=raw["duration_us"] / 1e6,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
    )


def _run_python(
    url: str,
    bodies: list[bytes],
    seconds: float,
    connections: int,
    headers: dict[str, str],
    rate: float | None,
    unique: bool,
    processes: int,
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        body_file = Path(tmp) / "bodies.bin"
        body_file.write_bytes(orjson.dumps([body.decode() for body in bodies]))
        children = []
        run = os.urandom(3).hex()  # messageIds of --unique differ between runs too
        per_process = max(1, connections // processes)
        for index in range(processes):
            argv = [
                sys.executable,
                "-m",
                "bench.loadgen",
                url,
                str(body_file),
                "--seconds",
                str(seconds),
                "--connections",
                str(per_process),
                "--headers",
                orjson.dumps(headers).decode(),
                "--out",
                str(Path(tmp) / f"out-{index}.json"),
                "--offset",
                str(index * len(bodies) // processes),
                "--tag",
                f"{run}p{index}",
            ]
            if rate is not None:
                argv += ["--rate", str(rate / processes)]
            if unique:
                argv.append("--unique")
            children.append(subprocess.Popen(argv))
        try:
            for child in children:
                child.wait(timeout=seconds + 120)
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        parts = [orjson.loads((Path(tmp) / f"out-{i}.json").read_bytes()) for i in range(processes)]
    latencies = [value for part in parts for value in part["latencies_ms"]]
    statuses: dict[str, int] = {}
    for part in parts:
        for status, count in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    requests = sum(statuses.values())
    errors = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return LoadResult(
        tool="python",
        requests=requests,
        errors=errors,
        seconds=max(part["seconds"] for part in parts),
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies) if latencies else None,
        status_counts=statuses,
    )


# ---- the Python generator (one process) ------------------------------------------------------


def _request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    host: str,
    port: int,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    start: int,
    stop_at: float,
    interval: float | None,
    unique_tag: bytes | None,
    latencies: list[float],
    statuses: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index, rounds = start, 0
    next_send = time.perf_counter()
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            if interval is not None:
                if next_send > now:
                    await asyncio.sleep(next_send - now)
                    if time.perf_counter() >= stop_at:
                        return
                sent_at = next_send  # latency from the intended send time (no coordinated omission)
                next_send += interval
            else:
                sent_at = now
            body = bodies[index]
            if unique_tag is not None:
                body = body.replace(b'"messageId":"', b'"messageId":"' + unique_tag + b"%d-" % rounds)
            index += 1
            if index == len(bodies):
                index, rounds = 0, rounds + 1
            writer.write(_request(host, path, headers, body))
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - sent_at) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _generate(args: argparse.Namespace) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parsed = urlsplit(args.url)
    bodies = [body.encode() for body in orjson.loads(Path(args.bodies).read_bytes())]
    headers: dict[str, str] = orjson.loads(args.headers)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    started = time.perf_counter()
    stop_at = started + args.seconds
    interval = args.connections / args.rate if args.rate else None
    tag = args.tag.encode() if args.unique else None
    tasks = [
        _connection(
            parsed.hostname or "127.0.0.1",
            parsed.port or 80,
            parsed.path or "/",
            headers,
            bodies,
            (args.offset + i * len(bodies) // args.connections) % len(bodies),
            stop_at,
            interval,
            tag + b"c%dr" % i if tag else None,
            latencies,
            statuses,
        )
        for i in range(args.connections)
    ]
    await asyncio.gather(*tasks)
    return {"latencies_ms": latencies, "statuses": statuses, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description="One process of the Python HTTP load generator.")
    parser.add_argument("url")
    parser.add_argument("bodies", help="JSON array of request bodies (strings)")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--headers", default="{}")
    parser.add_argument("--rate", type=float, help="requests/s over all connections (open loop)")
    parser.add_argument("--unique", action="store_true", help="new messageIds on every pass")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--tag", default="p0")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    Path(args.out).write_bytes(orjson.dumps(asyncio.run(_generate(args))))


if __name__ == "__main__":
    main()
