"""Scoring a store's unscored fits (imported static fits) when a run opens it, so they supervise at once.

`spin fits import` without `--data` stores SPIN's static fits with the placeholder loss
`store.UNSCORED_LOSS`, which never passes the threshold. SPIN recomputes a static fit's loss at
each step instead; here the trainer scores them once, at start-up, with
`fitting_workers.scoring.score_fits` (the stored loss definition against the dataset's keypoints in
SPIN's 224-px crop) and rewrites them through `put_if_better` (the real loss is lower, so it is
accepted; pose and betas are unchanged, round, step and source are kept). Failed fits (too few
keypoints, …) keep the placeholder and are counted by reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ScoringProgress = Callable[[int, int], None]
"""Called as on_progress(done, total) after each scored batch."""
SCORE_BATCH = 1024


@dataclass
class ScoringSummary:
    """unscored: fits found with the placeholder loss; scored: rewritten with their real loss;
    failed: left unscored, by reason (`fitting_workers.smplify.FAILURE_REASONS`)."""

    unscored: int = 0
    scored: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"unscored": self.unscored, "scored": self.scored, "failed_by_reason": dict(self.failed)}


def unscored_indices(store: Any, dataset: str) -> np.ndarray:
    """(n,) int64 row indices of `dataset`'s fits that carry the placeholder loss."""
    from store import UNSCORED_LOSS
    from store.stats import dataset_columns

    if dataset not in store.datasets():
        return np.zeros(0, np.int64)
    columns = dataset_columns(store, dataset)
    return columns["index"][columns["loss"] >= UNSCORED_LOSS].astype(np.int64)


def find_unscored(store: Any, keypoints: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per dataset of `keypoints`: the unscored rows that have keypoints (rows beyond are left alone)."""
    todo = {name: unscored_indices(store, name) for name in keypoints}
    return {name: rows[rows < len(keypoints[name])] for name, rows in todo.items()}


def score_unscored_fits(store: Any, keypoints: dict[str, np.ndarray], body: Any, config: Any,
                        on_progress: ScoringProgress | None = None, batch_size: int = SCORE_BATCH,
                        todo: dict[str, np.ndarray] | None = None) -> ScoringSummary:
    """Score every unscored fit of the datasets in `keypoints` (name → (N, 49, 3) canonical 224-crop
    keypoints with confidence) and write the scored ones back into `store` (writable).

    body: a `spin.body.BodyModel`; config: the run's `SmplifyConfig` (focal length, σ, minimum
    keypoints). todo: `find_unscored(store, keypoints)` when already known.
    """
    from fitting_workers.scoring import score_fits
    from fitting_workers.smplify import FAILURE_REASONS

    todo = find_unscored(store, keypoints) if todo is None else todo
    summary = ScoringSummary(unscored=int(sum(len(rows) for rows in todo.values())))
    done = 0
    for name, rows in todo.items():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            keys = [f"{name}/{int(i)}" for i in chunk]
            fits = store.get(keys)
            loss, cam_t, failure = score_fits(body, fits["pose"], fits["betas"], keypoints[name][chunk],
                                              config)
            for code, count in zip(*np.unique(failure[failure > 0], return_counts=True), strict=True):
                reason = FAILURE_REASONS[int(code)]
                summary.failed[reason] = summary.failed.get(reason, 0) + int(count)
            ok = failure == 0
            if ok.any():
                put = store.put_if_better([k for k, good in zip(keys, ok, strict=True) if good],
                                          fits["pose"][ok], fits["betas"][ok], cam_t[ok], loss[ok],
                                          round=fits["round"][ok], step=fits["step"][ok],
                                          source=list(fits["source"][ok]))
                summary.scored += int(np.asarray(put.accepted).sum())
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, summary.unscored)
    return summary


def score_store_at_start(store_path: Path, sizes: dict[str, int], keypoints: dict[str, np.ndarray],
                         body: Any, config: Any,
                         on_progress: ScoringProgress | None = None) -> ScoringSummary:
    """Open the run's store (declaring its datasets, `sizes`), score its unscored fits, close it.

    Without `on_progress` a progress bar (`spin.progress`) is shown while there is work.
    """
    from store import FitsStore

    with FitsStore(store_path) as store:
        for name, size in sizes.items():
            store.declare_dataset(name, size)
        if on_progress is not None:
            return score_unscored_fits(store, keypoints, body, config, on_progress)
        todo = find_unscored(store, keypoints)
        if not any(len(rows) for rows in todo.values()):
            return ScoringSummary()
        from spin.progress import progress_bar

        with progress_bar("scoring imported fits", transient=True) as bar:
            def advance(done: int, total: int) -> None:
                bar.update(completed=done, total=total)

            return score_unscored_fits(store, keypoints, body, config, on_progress=advance, todo=todo)
