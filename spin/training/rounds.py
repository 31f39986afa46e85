"""Round bookkeeping: where a round's files go, its metrics.json, and the summary of a run's rounds."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from spin.errors import UserError

METRICS_FILE = "metrics.json"
PLOT_FILE = "rounds.png"


def round_dir(run_dir: Path, round_number: int) -> Path:
    """`<run_dir>/round_XXX` (rounds count from 1)."""
    return Path(run_dir) / f"round_{round_number:03d}"


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """metrics.json, atomically; NaN/Inf written as null (valid JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_finite(metrics), indent=2, sort_keys=True))
    os.replace(tmp, path)


def round_finished(run_dir: Path, round_number: int) -> bool:
    return (round_dir(run_dir, round_number) / METRICS_FILE).is_file()


def load_rounds(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every finished round's metrics, in order. A folder without rounds is a UserError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"Run folder {run_dir} does not exist; "
                        "pass the folder `spin train` wrote (runs/<name>).")
    rounds = [json.loads(p.read_text()) for p in sorted(run_dir.glob(f"round_*/{METRICS_FILE}"))]
    if not rounds:
        raise UserError(f"Run folder {run_dir} has no finished round yet (no round_XXX/{METRICS_FILE}); "
                        "wait for the first round to end or check the path.")
    return sorted(rounds, key=lambda r: r["round"])


def train_fit_stats(store: Any, sizes: dict[str, int], threshold: float) -> dict[str, Any]:
    """Fit statistics over the training datasets (`sizes`: name → samples): count, coverage,
    frac_valid (of stored / of train samples), mean and per-dataset median loss."""
    from store.stats import dataset_stats

    everything = dataset_stats(store, threshold)
    per_dataset = {k: v for k, v in everything.items() if k in sizes}
    count = sum(v["count"] for v in per_dataset.values())
    size = sum(sizes.values())
    valid = sum(v["frac_valid"] * v["count"] for v in per_dataset.values())
    scored = [(v["mean_loss"], v["count"] - v["unscored"]) for v in per_dataset.values()
              if v["mean_loss"] is not None]
    weight = sum(n for _, n in scored)
    return {
        "fits_count": count,
        "coverage": count / size if size else 0.0,
        "frac_valid": valid / count if count else 0.0,
        "frac_valid_of_train": valid / size if size else 0.0,
        "mean_fit_loss": sum(m * n for m, n in scored) / weight if weight else None,
        "median_fit_loss": {k: v["median_loss"] for k, v in per_dataset.items()},
    }


COVERAGE_KEYS = ("offered", "fitted", "dropped")


def fit_coverage(stats: dict[str, Any], base: dict[str, int]) -> dict[str, Any]:
    """The round's fitting coverage from cumulative fitting stats and their values at the round's start.

    `fits_offered_in_round` jobs handed to fitting, `fits_fitted_in_round` fitted (failed ones
    included), `fits_dropped_in_round` never fitted (no room, lost twice), `fitted_share` fitted /
    offered (None without fitting; jobs still in flight at the round's end count in the next round).
    """
    if "offered" not in stats:
        return {"fitted_share": None}
    delta = {key: int(stats.get(key) or 0) - int(base.get(key, 0)) for key in COVERAGE_KEYS}
    return {**{f"fits_{key}_in_round": value for key, value in delta.items()},
            "fitted_share": delta["fitted"] / delta["offered"] if delta["offered"] else None}


def coverage_base(stats: dict[str, Any]) -> dict[str, int]:
    """What `fit_coverage` subtracts for the next round."""
    return {key: int(stats.get(key) or 0) for key in COVERAGE_KEYS}


def fit_truth_metrics(store: Any, datasets: list[Any], body: Any, threshold: float) -> dict[str, Any]:
    """The stored fits' error against the synthetic data's hidden ground truth (`fits_mpjpe`,
    `fits_pa_mpjpe`, mm): the direct measure of the loop's self-improvement."""
    from spin.evaluation.fit_truth import fit_truth_metrics as measure

    return measure(store, datasets, body, threshold)


def plot_rounds(rounds: list[dict[str, Any]], out: Path) -> Path:
    """PNG: MPJPE and PA-MPJPE per round (left), fit statistics per round (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["round"] for r in rounds]

    def series(key: str) -> list[float]:
        return [float("nan") if r.get(key) is None else r[key] for r in rounds]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, series("mpjpe"), "o-", label="MPJPE")
    left.plot(x, series("pa_mpjpe"), "s-", label="PA-MPJPE")
    left.set_xlabel("round")
    left.set_ylabel("mm (test split, 14 LSP joints)")
    left.set_xticks(x)
    left.legend()
    left.grid(alpha=0.3)
    right.plot(x, series("frac_valid"), "o-", color="tab:green", label="fits under threshold (of stored)")
    right.plot(x, series("frac_valid_of_train"), "^--", color="tab:olive",
               label="train samples with a valid fit")
    right.set_xlabel("round")
    right.set_ylabel("fraction")
    right.set_ylim(0, 1.02)
    right.set_xticks(x)
    right.grid(alpha=0.3)
    loss_axis = right.twinx()
    loss_axis.plot(x, series("mean_fit_loss"), "d:", color="tab:red", label="mean fit loss")
    loss_axis.set_ylabel("mean stored fit loss")
    lines = right.get_lines() + loss_axis.get_lines()
    right.legend(lines, [line.get_label() for line in lines], loc="lower right", fontsize=8)
    fig.suptitle("SPIN rounds")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
