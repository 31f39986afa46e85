"""Compare two fits stores key by key: which fits improved, got worse, appeared or vanished."""

from __future__ import annotations

from typing import Any

import numpy as np

from store.fits_store import FitsStore
from store.schema import UNSCORED_LOSS
from store.stats import dataset_columns


def diff_stores(before: FitsStore, after: FitsStore, threshold: float = 100.0) -> dict[str, dict[str, Any]]:
    """Per dataset present in either store: counts of common / new / removed / improved / worse /
    unchanged keys, `scored` (unscored before, a real loss after) and `unscored` (the reverse), the
    improvement (before − after loss over improved keys: mean, median, max), and the change in the
    number of fits under `threshold`. Unscored fits (`UNSCORED_LOSS`) never count as a gain.
    """
    names = list(dict.fromkeys([*before.datasets(), *after.datasets()]))
    result = {}
    for name in names:
        a = dataset_columns(before, name) if name in before.datasets() else _empty()
        b = dataset_columns(after, name) if name in after.datasets() else _empty()
        common, in_a, in_b = np.intersect1d(a["index"], b["index"], assume_unique=True, return_indices=True)
        loss_a, loss_b = a["loss"][in_a], b["loss"][in_b]
        # The placeholder loss of unscored fits is no measurement: a first real loss is "scored",
        # not a gain of ~1e9, and only keys scored on both sides count as improved or worse.
        unscored_a, unscored_b = loss_a >= UNSCORED_LOSS, loss_b >= UNSCORED_LOSS
        both = ~unscored_a & ~unscored_b
        gain = np.where(both, loss_a - loss_b, 0.0)
        improved = both & (gain > 0)
        result[name] = {
            "common": int(len(common)),
            "new": int(len(b["index"]) - len(common)),
            "removed": int(len(a["index"]) - len(common)),
            "improved": int(improved.sum()),
            "scored": int((unscored_a & ~unscored_b).sum()),
            "unscored": int((~unscored_a & unscored_b).sum()),
            "worse": int((both & (gain < 0)).sum()),
            "unchanged": int((both & (gain == 0)).sum() + (unscored_a & unscored_b).sum()),
            "mean_improvement": float(gain[improved].mean()) if improved.any() else 0.0,
            "median_improvement": float(np.median(gain[improved])) if improved.any() else 0.0,
            "max_improvement": float(gain[improved].max()) if improved.any() else 0.0,
            "valid_before": int((a["loss"] < threshold).sum()),
            "valid_after": int((b["loss"] < threshold).sum()),
        }
    return result


def _empty() -> dict[str, np.ndarray]:
    return {"index": np.zeros(0, np.int64), "loss": np.zeros(0)}
