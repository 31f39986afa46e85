"""The one fit path: fit a batch → drop failed samples → `put_if_better` → count.

The Ray fitting actor, the trainer's sync mode and `spin fit` all call `fit_and_offer`, so a fit
is filtered, written and counted the same way wherever it is made. The store's `PutResult` says
which candidates were written and what they replaced: nothing is read to count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fitting_workers.counts import FitCounts
from fitting_workers.jobs import FitJobBatch

if TYPE_CHECKING:
    from fitting_workers.smplify import FitResult

NONFINITE_LOSS = "nonfinite_loss"  # a fit SMPLify did not flag but whose loss is not finite

Fitter = Callable[[FitJobBatch], "FitResult"]


class CandidateStore(Protocol):
    """What the fit path writes to: `FitsStore` or `RemoteFitsStore` (both return a `PutResult`)."""

    def put_if_better(self, keys, pose, betas, cam_t, loss, round=0, step=0, source="smplify") -> Any: ...


def smplify_fitter(smplify: Any) -> Fitter:
    """A `SMPLify` as a fitter: `FitJobBatch -> FitResult`."""

    def fit(jobs: FitJobBatch) -> FitResult:
        return smplify.fit(jobs.keypoints, jobs.pose, jobs.betas, jobs.cam_t)

    return fit


def usable_fits(result: FitResult) -> tuple[np.ndarray, dict[str, int]]:
    """(B,) bool of the fits that may be offered (not failed, finite loss ≥ 0), and the failed by reason."""
    loss = np.asarray(result.loss, dtype=np.float64)
    failed = np.asarray(result.failed, dtype=bool)
    bad_loss = ~failed & ~(np.isfinite(loss) & (loss >= 0))
    reasons = dict(result.failure_counts())
    if bad_loss.any():
        reasons[NONFINITE_LOSS] = int(bad_loss.sum())
    return ~failed & ~bad_loss, reasons


def fit_and_offer(fitter: Fitter, store: CandidateStore | None, jobs: FitJobBatch,
                  threshold: float) -> tuple[FitResult, FitCounts]:
    """Fit `jobs`, offer the usable fits to `store` in one `put_if_better`, count what happened.

    store None: fit and count only (`spin fit` without `--store`). Failed fits are never offered.
    `valid` counts usable fits with loss < `threshold`. Returns SMPLify's result (all B samples)
    and the counts.
    """
    start = time.perf_counter()
    result = fitter(jobs)
    counts = FitCounts(offered=len(jobs), fitted=len(jobs), fit_seconds=time.perf_counter() - start)
    usable, counts.failed = usable_fits(result)
    loss = np.asarray(result.loss, dtype=np.float32)
    counts.loss_sum = float(loss[usable].astype(np.float64).sum())
    counts.valid = int((loss[usable] < threshold).sum())
    if store is not None and usable.any():
        start = time.perf_counter()
        put = store.put_if_better(
            [key for key, ok in zip(jobs.keys, usable, strict=True) if ok],
            np.asarray(result.pose, dtype=np.float32)[usable],
            np.asarray(result.betas, dtype=np.float32)[usable],
            np.asarray(result.cam_t, dtype=np.float32)[usable],
            loss[usable],
            round=jobs.round,
            step=jobs.step,
            source="smplify",
        )
        counts.write_seconds = time.perf_counter() - start
        counts.accepted = int(np.asarray(put.accepted).sum())
        counts.improved = int(np.asarray(put.improved).sum())
    return result, counts
