"""Summary statistics of the fits in a store, per dataset, per source and per round written."""

from __future__ import annotations

from typing import Any

import numpy as np

from store.fits_store import FitsStore
from store.schema import UNSCORED_LOSS


def dataset_columns(store: FitsStore, dataset: str) -> dict[str, np.ndarray]:
    """One dataset's `index`, `loss`, `round` and `source` columns, streamed: (n,) arrays."""
    parts: dict[str, list[np.ndarray]] = {"index": [], "loss": [], "round": [], "source": []}
    for chunk in store.iter_dataset(dataset):
        for name, values in parts.items():
            values.append(chunk[name])
    return {
        name: np.concatenate(values) if values else np.zeros(0, dtype="<U7" if name == "source" else None)
        for name, values in parts.items()
    }


def loss_summary(loss: np.ndarray, threshold: float) -> dict[str, Any]:
    """count, mean/median loss over scored fits (None when there are none), fraction under threshold.

    Unscored fits (imported without a loss, `UNSCORED_LOSS`) count as not valid and stay out of
    the mean and median so that one import does not swamp them.
    """
    scored = loss[loss < UNSCORED_LOSS]
    return {
        "count": int(len(loss)),
        "mean_loss": float(scored.mean()) if scored.size else None,
        "median_loss": float(np.median(scored)) if scored.size else None,
        "frac_valid": float((loss < threshold).mean()) if len(loss) else 0.0,
        "unscored": int(len(loss) - scored.size),
    }


def dataset_stats(store: FitsStore, threshold: float = 100.0) -> dict[str, dict[str, Any]]:
    """Per dataset: count, size, mean_loss, median_loss, frac_valid, unscored, by_source, by_round."""
    result: dict[str, dict[str, Any]] = {}
    for name, entry in store.datasets().items():
        columns = dataset_columns(store, name)
        summary = loss_summary(columns["loss"], threshold)
        summary["size"] = int(entry["size"])
        summary["by_source"] = {
            str(source): loss_summary(columns["loss"][columns["source"] == source], threshold)
            for source in np.unique(columns["source"])
        }
        summary["by_round"] = {
            str(r): loss_summary(columns["loss"][columns["round"] == r], threshold)
            for r in np.unique(columns["round"]).tolist()
        }
        result[name] = summary
    return result
