"""`spin fits import --data`: score imported fits against their dataset's keypoints before writing.

SPIN recomputes its static fits' loss at every step, so they supervise from step 1; here the score
is computed once on import (`fitting_workers.scoring`) and stored as the fit's loss with its camera.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console

from spin.errors import UserError


def _scores(rows_pose: np.ndarray, rows_betas: np.ndarray, data: Path, body_model: Path | None,
            joint_regressor_extra: Path | None, console: Console):
    """(loss, cam_t, failure) of each row against the dataset's keypoints in SPIN's 224 crop."""
    from fitting_workers.scoring import score_in_batches
    from fitting_workers.smplify.fit import failure_counts
    from spin.body import BodyModel, resolve_body_files
    from spin.data.spin_format import load_spin_npz
    from spin.progress import progress_bar

    annotations = load_spin_npz(data)
    if len(annotations) != len(rows_pose):
        raise UserError(f"{data} has {len(annotations)} samples but the fits file has {len(rows_pose)} rows; "
                        "pass the dataset file the fits were made for")
    files = resolve_body_files(body_model, joint_regressor_extra)
    body = BodyModel.from_files(files)
    with progress_bar("scoring fits", total=len(rows_pose), console=console) as bar:
        loss, cam_t, failure = score_in_batches(
            body, rows_pose, rows_betas, annotations.keypoints,
            on_progress=lambda done, total: bar.update(completed=done))
    failed = failure != 0
    if failed.any():
        reasons = ", ".join(f"{name} {n}" for name, n in failure_counts(failure).items())
        console.print(f"[yellow]{int(failed.sum())} fits could not be scored and are not written:[/] "
                      f"{reasons}")
    return loss.astype(np.float64), cam_t, ~failed


def scored_import(file: Path, suffix: str, dataset: str, round: int, data: Path, body_model: Path | None,
                  joint_regressor_extra: Path | None, console: Console) -> Callable:
    """`write(store, on_progress)` like `spin.cli.fits._prepare_import`'s, with scored losses and cameras."""
    from store import schema
    from store.interchange.npy import read_spin_npy, write_static
    from store.interchange.npz import read_npz, write_final

    if suffix == ".npy":
        static = read_spin_npy(file)
        rows = static.rows
        loss, cam_t, keep = _scores(rows[:, : schema.NUM_POSE], rows[:, schema.NUM_POSE :], data, body_model,
                                    joint_regressor_extra, console)
        scored = replace(static, losses=loss, cam_t=cam_t, keep=keep)
        return lambda fits, on_progress: [write_static(fits, dataset, scored, round, on_progress)]
    final = read_npz(file)
    loss, cam_t, keep = _scores(final.pose, final.betas, data, body_model, joint_regressor_extra, console)
    rows = np.flatnonzero(keep)
    scored = replace(final, loss=loss, cam_t=cam_t, keep=np.intersect1d(final.keep, rows))
    return lambda fits, on_progress: [write_final(fits, dataset, scored, round, on_progress)]
