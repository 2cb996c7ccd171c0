"""``python -m bench`` (``make bench``): every benchmark, one after the other, then one table.

    python -m bench [--only gateway,identity] [--update-docs]
    BENCH_SCALE=5 python -m bench          # 5x the default sizes and durations

Each benchmark runs as its own process (each starts its own broker; chDB allows one process
per data directory) with a time limit, so one failure or hang does not stop the others. The
order goes from the cheapest to the most expensive. Then ``bench/results/summary.json`` is
written, the combined markdown table printed, and with ``--update-docs`` the results section
of ``docs/benchmarks.md`` rewritten (``bench.report``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from bench.common import RESULTS_DIR, ROOT, scale
from bench.report import DOCS, collect, markdown, update_docs, write_summary

# (results name, module, time limit in seconds at BENCH_SCALE=1)
BENCHMARKS: tuple[tuple[str, str, float], ...] = (
    ("sink", "bench.sink_throughput", 300),
    ("gateway", "bench.gateway_throughput", 300),
    ("identity", "bench.identity_throughput", 420),
    ("identity_graph", "bench.identity_graph", 300),
    ("end_to_end", "bench.end_to_end", 480),
    ("broker_batches", "bench.broker_batches", 300),
    ("persistence", "bench.persistence", 900),
    ("read_api", "bench.read_api", 1200),
    ("privacy", "bench.privacy", 1200),
    ("audience_backfill", "bench.audience_backfill", 900),
    ("audience_freshness", "bench.audience_freshness", 900),
)


def run_one(name: str, module: str, limit: float) -> dict[str, Any]:
    """Run ``python -m module`` (output to this terminal) within ``limit`` seconds."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.exists():
        return {"status": "skipped", "note": f"{path.relative_to(ROOT)} does not exist yet"}
    (RESULTS_DIR / f"{name}.json").unlink(missing_ok=True)  # never report a stale result
    print(f"\n=== {name}: python -m {module} (limit {limit:.0f} s) ===", flush=True)
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT)
    try:
        code = process.wait(timeout=limit)
    except KeyboardInterrupt:  # Ctrl-C reached the child too: let it stop what it started
        process.wait(timeout=60)
        raise
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return {"status": "timeout", "note": f"stopped after {limit:.0f} s", "seconds": limit}
    seconds = round(time.monotonic() - started, 1)
    if code != 0:
        return {"status": "failed", "note": f"exit code {code}", "seconds": seconds}
    if not (RESULTS_DIR / f"{name}.json").exists():
        return {"status": "failed", "note": f"no bench/results/{name}.json written", "seconds": seconds}
    return {"status": "ok", "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated names: " + ",".join(n for n, _, _ in BENCHMARKS))
    parser.add_argument(
        "--update-docs", action="store_true", help=f"rewrite the results section of {DOCS.name}"
    )
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in BENCHMARKS}
    unknown = chosen - {name for name, _, _ in BENCHMARKS}
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {sorted(unknown)}")
    runs: dict[str, dict[str, Any]] = {}
    for name, module, limit in BENCHMARKS:
        if name in chosen:
            runs[name] = run_one(name, module, limit * max(1.0, scale()))
    summary = collect(runs)
    path = write_summary(summary)
    text = markdown(summary)
    print("\n" + text)
    print(f"\nsummary: {path.relative_to(ROOT)}")
    if args.update_docs:
        update_docs(text)
        print(f"updated {DOCS.relative_to(ROOT)} (plots: python -m bench.report --copy-plots)")
    if any(run["status"] in ("failed", "timeout") for run in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
