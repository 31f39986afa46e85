"""PNG plots of an experiment's results: bars (mean, ± std error bars, seeds as dots) per metric, and
curves over `x` per series for rows that sit on a curve (the 3D-fraction experiment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

BARS_FILE = "bars.png"
CURVES_FILE = "curves.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _metrics_with_values(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        m
        for m in results["metrics"]
        if any(row["summary"][m["key"]]["mean"] is not None for row in results["rows"])
    ]


def _axis_label(metric: dict[str, Any]) -> str:
    return f"{metric['label']} ({metric['unit']})" if metric["unit"] else metric["label"]


def plot_bars(results: dict[str, Any], out: Path) -> Path | None:
    """One panel per metric that has values: a bar per row, error bar = std over seeds."""
    metrics = _metrics_with_values(results)
    rows = [row for row in results["rows"] if row["status"] != "unavailable"]
    if not metrics or not rows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(max(4.0, 0.6 * len(rows) + 2) * len(metrics), 4.2), squeeze=False
    )
    for axis, metric in zip(axes[0], metrics, strict=True):
        key = metric["key"]
        means = [row["summary"][key]["mean"] for row in rows]
        stds = [row["summary"][key]["std"] or 0.0 for row in rows]
        positions = range(len(rows))
        axis.bar(
            positions,
            [m if m is not None else 0.0 for m in means],
            yerr=stds,
            capsize=4,
            color="tab:blue",
            alpha=0.75,
        )
        for i, row in enumerate(rows):
            seeds = [run["metrics"].get(key) for run in row["runs"] if run["status"] == "finished"]
            seeds = [v for v in seeds if v is not None]
            axis.plot([i] * len(seeds), seeds, "k.", markersize=4)
            if means[i] is None:
                axis.text(i, 0, "no runs", ha="center", va="bottom", fontsize=7, rotation=90)
        axis.set_xticks(list(positions))
        axis.set_xticklabels([row["name"] for row in rows], rotation=35, ha="right", fontsize=8)
        axis.set_ylabel(_axis_label(metric))
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{results['experiment']} (mean ± std over seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_curves(results: dict[str, Any], out: Path) -> Path | None:
    """For rows with `series` and `x`: one line per series over x (evenly spaced ticks), ± std bands."""
    rows = [
        row
        for row in results["rows"]
        if row["series"] is not None and row["x"] is not None and row["status"] != "unavailable"
    ]
    metrics = _metrics_with_values(results)
    if not rows or not metrics:
        return None
    xs = sorted({row["x"] for row in rows})
    position = {x: i for i, x in enumerate(xs)}
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 4.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics, strict=True):
        key = metric["key"]
        for series in dict.fromkeys(row["series"] for row in rows):
            points = sorted(
                (row["x"], row["summary"][key])
                for row in rows
                if row["series"] == series and row["summary"][key]["mean"] is not None
            )
            if not points:
                continue
            px = [position[x] for x, _ in points]
            means = [s["mean"] for _, s in points]
            stds = [s["std"] or 0.0 for _, s in points]
            axis.errorbar(px, means, yerr=stds, marker="o", capsize=3, label=series)
        axis.set_xticks(range(len(xs)))
        axis.set_xticklabels([f"{x:g}" for x in xs])
        axis.set_xlabel(results.get("x_label") or "x")
        axis.set_ylabel(_axis_label(metric))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.suptitle(f"{results['experiment']} (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_plots(out: Path, results: dict[str, Any]) -> list[str]:
    """The experiment's PNGs in `out`; only those with something to draw."""
    made = [plot_bars(results, out / BARS_FILE), plot_curves(results, out / CURVES_FILE)]
    return [str(p) for p in made if p is not None]
