"""The PNG behind `spin fits plot`: loss histogram with the threshold, acceptance by round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from store.schema import UNSCORED_LOSS


def plot_fits(
    losses: dict[str, np.ndarray],
    by_round: dict[str, dict[str, Any]],
    threshold: float,
    out: Path,
    title: str = "",
) -> None:
    """losses: dataset → (n,) stored losses; by_round: the store's per-round write counters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (histogram, acceptance) = plt.subplots(1, 2, figsize=(12, 4.5))
    scored = {name: loss[loss < UNSCORED_LOSS] for name, loss in losses.items()}
    everything = np.concatenate([v for v in scored.values() if v.size] or [np.zeros(0)])
    positive = everything[everything > 0]
    if positive.size:
        low, high = max(positive.min(), 1e-3), max(positive.max(), threshold * 1.5)
        bins = np.geomspace(low, high, 60)
        for name, loss in scored.items():
            unscored = len(losses[name]) - len(loss)
            label = f"{name} ({len(loss)} fits" + (f", {unscored} unscored)" if unscored else ")")
            histogram.hist(np.clip(loss, low, None), bins=bins, histtype="step", linewidth=1.5, label=label)
        histogram.set_xscale("log")
    else:
        histogram.text(
            0.5, 0.5, "no scored fits yet", ha="center", va="center", transform=histogram.transAxes
        )
    histogram.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:g}")
    if positive.size:
        histogram.legend(fontsize=8)
    histogram.set_xlabel("stored reprojection loss (log scale)")
    histogram.set_ylabel("fits")
    histogram.set_title("loss of the best fit per sample")

    rounds = sorted(by_round, key=int)
    if rounds:
        offered = np.array([by_round[r]["offered"] for r in rounds], dtype=float)
        accepted = np.array([by_round[r]["accepted"] for r in rounds], dtype=float)
        rate = np.divide(accepted, offered, out=np.zeros_like(accepted), where=offered > 0)
        acceptance.bar(rounds, rate, color="tab:blue")
        for x, (value, n) in enumerate(zip(rate, offered, strict=True)):
            acceptance.text(x, value, f"{int(n)} offered", ha="center", va="bottom", fontsize=8)
        acceptance.set_ylim(0, 1.1)
    else:
        acceptance.text(0.5, 0.5, "no writes yet", ha="center", va="center", transform=acceptance.transAxes)
    acceptance.set_xlabel("round")
    acceptance.set_ylabel("accepted / offered")
    acceptance.set_title("acceptance of offered fits by round")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
