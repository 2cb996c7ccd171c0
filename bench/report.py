"""Results -> markdown: the combined table, ``summary.json``, and the table section of the docs.

    python -m bench.report [--update-docs] [--copy-plots]

Reads ``bench/results/<name>.json`` of every benchmark that ran, writes
``bench/results/summary.json`` and prints the markdown. ``--update-docs`` replaces the text
between the ``<!-- bench:results:start -->`` and ``<!-- bench:results:end -->`` markers of
``docs/benchmarks.md`` (the prose around them stays hand-written); ``--copy-plots`` copies the
PNG plots to ``docs/img/`` (the paths the docs reference).
"""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.common import RESULTS_DIR, ROOT, fmt, load_result, machine

BENCHMARKS = (
    "gateway",
    "identity",
    "identity_graph",
    "sink",
    "end_to_end",
    "broker_batches",
    "persistence",
    "read_api",
    "privacy",
    "audience_backfill",
    "audience_freshness",
)
DOCS = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"
START, END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def collect(runs: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The summary of the last results of every benchmark (plus how each run ended, if known)."""
    results = {name: data for name in BENCHMARKS if (data := load_result(name)) is not None}
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "runs": runs or {},
        "results": results,
    }


def _share(figure: dict[str, Any]) -> str:
    ratio = figure.get("ratio")
    return "" if ratio is None else f"{100 * ratio:.0f}%"


def _target(figure: dict[str, Any]) -> str:
    target = figure.get("target")
    if target is None:
        return ""
    sign = "≥" if figure.get("better", "higher") == "higher" else "<"
    met = figure.get("target_met")
    verdict = "" if met is None else (" ✅" if met else " ❌")
    return f"{sign} {fmt(target, figure['unit'])}{verdict}"


def figures_table(summary: dict[str, Any]) -> str:
    rows = [
        "| stage | figure | value | ceiling (same run) | % of ceiling | target |",
        "| --- | --- | --- | --- | ---: | --- |",
    ]
    for name, data in summary["results"].items():
        figures = data.get("figures")
        if not isinstance(figures, list):
            rows.append(f"| {name} | (results without figures: see `bench/results/{name}.json`) | | | | |")
            continue
        for f in figures:
            ceiling = (
                "" if f.get("ceiling") is None else f"{fmt(f['ceiling'], f['unit'])} ({f['ceiling_label']})"
            )
            rows.append(
                f"| {f['stage']} | {f['metric']} | {fmt(f['value'], f['unit'])} | {ceiling} "
                f"| {_share(f)} | {_target(f)} |"
            )
    return "\n".join(rows)


def memory_table(summary: dict[str, Any]) -> str:
    rows = [
        "| run | process | processes | peak RSS (largest process) | sum of peaks |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for name, data in summary["results"].items():
        groups: dict[str, list[float]] = {}
        for entry in data.get("memory") or []:
            groups.setdefault(entry["process"], []).append(entry["peak_rss_mb"])
        for label, peaks in groups.items():
            rows.append(
                f"| {name} | {label} | {len(peaks)} | {fmt(max(peaks), 'MiB')} | {fmt(sum(peaks), 'MiB')} |"
            )
    return "\n".join(rows)


def machine_lines(summary: dict[str, Any]) -> str:
    m = summary["machine"]
    scales = sorted({data.get("scale") for data in summary["results"].values() if data.get("scale")})
    lines = [
        f"- run: {summary['generated_at']}, BENCH_SCALE {', '.join(str(s) for s in scales) or 'n/a'}",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}",
        f"- Python {m['python']}; Tansu {m['tansu'].removeprefix('tansu ')}; chDB {m['chdb']}",
        f"- confluent-kafka {m['confluent_kafka']}; clickhouse-connect {m['clickhouse_connect']}; "
        f"faust-streaming {m['faust_streaming']}",
        f"- Starlette {m['starlette']}, uvicorn {m['uvicorn']}, fastavro {m['fastavro']}, "
        f"orjson {m['orjson']}; load: {m['wrk']}",
    ]
    for name, run in summary["runs"].items():
        if run.get("status") != "ok":
            lines.append(f"- **{name}: {run.get('status')}** ({run.get('note', '')})")
    return "\n".join(lines)


def markdown(summary: dict[str, Any]) -> str:
    return "\n\n".join(
        [
            machine_lines(summary),
            figures_table(summary),
            "% of ceiling: value ÷ ceiling for rates, ceiling ÷ value for latencies (100% = as fast as "
            "the bare version measured in the same run).",
            "Peak resident memory (VmHWM from /proc) of the processes of each run:",
            memory_table(summary),
        ]
    )


def write_summary(summary: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "summary.json"
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    return path


def update_docs(text: str, docs: Path = DOCS) -> None:
    """Replace the generated section of ``docs`` (between the markers) with ``text``."""
    current = docs.read_text()
    if START not in current or END not in current:
        raise SystemExit(f"{docs} lacks the {START} ... {END} markers")
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    docs.write_text(
        f"{head}{START}\n<!-- generated by `python -m bench.report`: do not edit by hand -->\n\n"
        f"{text}\n\n{END}{tail}"
    )


def copy_plots() -> list[Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    copied = []
    for png in sorted(RESULTS_DIR.glob("*.png")):
        shutil.copy2(png, IMAGES / png.name)
        copied.append(IMAGES / png.name)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--update-docs", action="store_true", help="rewrite the results section of the docs")
    parser.add_argument("--copy-plots", action="store_true", help="copy the PNG plots to docs/img/")
    args = parser.parse_args()
    summary = collect()
    write_summary(summary)
    text = markdown(summary)
    print(text)
    if args.update_docs:
        update_docs(text)
        print(f"\nupdated {DOCS.relative_to(ROOT)}")
    if args.copy_plots:
        for path in copy_plots():
            print(f"copied {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
