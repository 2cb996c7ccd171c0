"""The benchmarks' PNG plots (matplotlib, Agg backend), written next to the results JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.common import RESULTS_DIR, ROOT, Figure, Result, fmt

# ---- plots -----------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_vs_ceiling(result: Result, title: str, figures: Sequence[Figure] | None = None) -> None:
    """Each figure as a share of its ceiling (bars, %), absolute values as labels; <name>.png.

    Figures of different units share one axis this way; a red tick marks the target.
    """
    plt = _pyplot()
    chosen = [f for f in (figures or result.figures) if f.ratio is not None]
    if not chosen:
        return
    fig, ax = plt.subplots(figsize=(9, 1.0 + 0.7 * len(chosen)))
    shares = [100 * (f.ratio or 0) for f in chosen]
    positions = list(range(len(chosen)))
    colors = ["#2b7bba" if f.target_met is not False else "#d9822b" for f in chosen]
    ax.barh(positions, shares, color=colors, height=0.6)
    ax.axvline(100, color="#555555", linewidth=1)
    for p, f, share in zip(positions, chosen, shares, strict=True):
        text = f" {fmt(f.value, f.unit)} vs {fmt(f.ceiling, f.unit)}"
        ax.text(share, p, text, va="center", fontsize=7)
        if f.target is not None and f.ceiling:
            mark = 100 * (f.target / f.ceiling if f.better == "higher" else f.ceiling / f.target)
            ax.plot([mark, mark], [p - 0.4, p + 0.4], color="crimson", linewidth=2)
    ax.set_yticks(positions, [f"{f.metric}\nvs {f.ceiling_label}" for f in chosen], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(130, *(s * 1.6 for s in shares)))
    ax.set_xlabel("% of the ceiling measured in the same run (latency: ceiling / value)")
    ax.set_title(title + "  (red: target; orange bar: target missed)", fontsize=10)
    _save(fig, plt, result, f"{result.name}.png")


def plot_lines(
    result: Result,
    filename: str,
    title: str,
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    hlines: dict[str, float] | None = None,
) -> None:
    """Lines over time (or any x): e.g. records done vs seconds, freshness vs send time."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for label, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), label=label, linewidth=1.5, marker="." if len(xs) < 60 else None)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="crimson", linestyle="--", linewidth=1, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, plt, result, filename)


def _save(fig: Any, plt: Any, result: Result, filename: str) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / filename
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    result.plots.append(str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path))


def plot_groups(
    result: Result, filename: str, title: str, groups: dict[str, dict[str, float | None]], ylabel: str
) -> None:
    """Grouped vertical bars: e.g. latency percentiles (series) of gateway vs echo (groups)."""
    plt = _pyplot()
    names = list(groups)
    series = sorted(
        {key for values in groups.values() for key in values},
        key=list(dict.fromkeys(key for values in groups.values() for key in values)).index,
    )
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, 4))
    for index, label in enumerate(series):
        xs = [g + index * width for g in range(len(names))]
        ax.bar(xs, [groups[name].get(label) or 0 for name in names], width=width, label=label)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(names))], names, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, plt, result, filename)
