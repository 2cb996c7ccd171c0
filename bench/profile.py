"""Sampling profiles of the process under test with py-spy, summarised as top frames.

    python -m bench.profile bench/results/gateway.gateway.folded [--top 25]

Benchmarks started with ``--profile`` run ``py-spy record -f raw`` (folded stacks, one line per
distinct stack with its sample count) on their main process under test during the measured
phase, write ``bench/results/<name>.<process>.folded`` and print the top frames: *self* (the
leaf of each sample: where the CPU actually is) and *inclusive* (in the stack at all: which
call path costs what). Load a ``.folded`` file in speedscope or ``flamegraph.pl`` to browse.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.common import RESULTS_DIR, ROOT


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def profiled(pid: int, name: str, enabled: bool = True) -> Iterator[Path | None]:
    """Record ``pid`` (all threads and subprocesses) while the body runs; print the top frames."""
    binary = py_spy()
    if not enabled or binary is None:
        if enabled:
            print("py-spy not found: no profile", flush=True)
        yield None
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    output = RESULTS_DIR / f"{name}.folded"
    argv = [binary, "record", "-f", "raw", "-r", "100", "--subprocesses", "--nonblocking"]
    argv += ["-p", str(pid), "-o", str(output)]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield output
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            _, errors = recorder.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, errors = recorder.communicate()
        if output.exists():
            print(f"\nprofile of pid {pid}: {output.relative_to(ROOT)}")
            print(summary(output))
        else:
            print(f"py-spy wrote no profile: {errors.decode(errors='replace')[-500:]}", flush=True)


def _frame(text: str) -> str:
    """``function (path/to/module.py:123)`` -> ``function (module.py)``: lines merged."""
    name, _, where = text.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.removeprefix(str(ROOT) + '/')})" if where else name


def top_frames(path: Path, top: int = 20) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, [(frame, self samples)], [(frame, inclusive samples)]) of a folded file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own.most_common(top), inclusive.most_common(top)


def summary(path: Path, top: int = 15) -> str:
    total, own, inclusive = top_frames(path, top)
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples; top self (where the CPU is):"]
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in own]
    lines.append("  top inclusive (call paths):")
    lines += [f"    {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folded", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summary(args.folded, args.top))


if __name__ == "__main__":
    main()
