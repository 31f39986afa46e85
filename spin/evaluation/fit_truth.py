"""The 3D error of the stored fits against the hidden ground truth of the samples trained without it.

On synthetic data every sample's true SMPL parameters are known, but only the `has_smpl` rows
supervise; the others learn from their fits. Scoring those fits against the hidden truth (the same
MPJPE / PA-MPJPE on the 14 LSP joints as `spin.evaluation.evaluate`) measures SPIN's
self-improvement claim directly: a better network gives better initialisations, hence better fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spin.body import BodyModel
from spin.evaluation.evaluate import lsp14
from spin.evaluation.metrics import mpjpe, pa_mpjpe
from spin.geometry import axis_angle_to_matrix
from spin.joints import NUM_OPENPOSE


@dataclass
class FitTruthError:
    """Fits of the hidden-truth rows scored against that truth (means in mm; None without fits).

    hidden: rows without ground-truth supervision; fitted: those with a stored fit; mpjpe /
    pa_mpjpe: over the fitted rows; valid, valid_mpjpe, valid_pa_mpjpe: the same over the fits whose
    loss is under `threshold` (the ones that supervise), when a threshold is given.
    """

    hidden: int
    fitted: int
    mpjpe: float | None
    pa_mpjpe: float | None
    valid: int | None = None
    valid_mpjpe: float | None = None
    valid_pa_mpjpe: float | None = None

    def metrics(self, prefix: str = "fit_truth_") -> dict[str, float | int | None]:
        """Flat dict for a rounds table / metrics file."""
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


def lsp14_joints(body: BodyModel, pose: np.ndarray, betas: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The 14 LSP joints (N,14,3) metres of SMPL parameters pose (N,72) axis-angle, betas (N,10)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(pose), batch_size):
            aa = torch.as_tensor(np.asarray(pose[start:start + batch_size]), dtype=torch.float32)
            rotmat = axis_angle_to_matrix(aa.reshape(-1, 24, 3))
            b = torch.as_tensor(np.asarray(betas[start:start + batch_size]), dtype=torch.float32)
            device = next((t.device for t in body.buffers()), torch.device("cpu"))
            joints = body.joints(rotmat.to(device), b.to(device))
            out.append(lsp14(joints[:, NUM_OPENPOSE:]).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 14, 3))


def fit_truth_error(store, dataset: str, gt_pose: np.ndarray, gt_betas: np.ndarray, has_smpl: np.ndarray,
                    body: BodyModel, threshold: float | None = None, batch_size: int = 256) -> FitTruthError:
    """Score the stored fits of `dataset`'s rows without ground-truth supervision against their hidden truth.

    store: a `store.FitsStore` (anything with `get(keys)` returning `pose`, `betas`, `loss`,
    `present`); gt_pose (N,72), gt_betas (N,10): every row's true SMPL parameters (canonical frame,
    as the fits are stored); has_smpl (N,) bool: rows whose truth supervises (left out). Both sides
    go through the same body model; the error is pose/shape only (root-aligned MPJPE and PA-MPJPE),
    as the test evaluation, so the fits' camera does not enter.
    """
    gt_pose, gt_betas = np.asarray(gt_pose), np.asarray(gt_betas)
    has_smpl = np.asarray(has_smpl).astype(bool).reshape(-1)
    if gt_pose.shape != (len(has_smpl), 72) or gt_betas.shape != (len(has_smpl), 10):
        raise ValueError(f"gt_pose {gt_pose.shape} / gt_betas {gt_betas.shape} do not match "
                         f"has_smpl ({len(has_smpl)},): expected (N,72) and (N,10)")
    rows = np.flatnonzero(~has_smpl)
    if rows.size == 0:
        return FitTruthError(hidden=0, fitted=0, mpjpe=None, pa_mpjpe=None)
    fits = store.get([f"{dataset}/{int(i)}" for i in rows])
    present = np.asarray(fits["present"], dtype=bool)
    loss = np.asarray(fits["loss"], dtype=np.float64)
    result = FitTruthError(hidden=int(rows.size), fitted=int(present.sum()), mpjpe=None, pa_mpjpe=None)
    if threshold is not None:
        result.valid = int((present & (loss < threshold)).sum())
    if not present.any():
        return result
    pose, betas = np.asarray(fits["pose"])[present], np.asarray(fits["betas"])[present]
    pred = lsp14_joints(body, pose, betas, batch_size)
    truth = lsp14_joints(body, gt_pose[rows[present]], gt_betas[rows[present]], batch_size)
    err, pa_err = mpjpe(pred, truth), pa_mpjpe(pred, truth)
    result.mpjpe, result.pa_mpjpe = float(err.mean()), float(pa_err.mean())
    if threshold is not None:
        valid = (loss[present] < threshold)
        if valid.any():
            result.valid_mpjpe, result.valid_pa_mpjpe = float(err[valid].mean()), float(pa_err[valid].mean())
    return result


def fit_truth_metrics(store, datasets, body: BodyModel, threshold: float | None = None) -> dict[str, float]:
    """`fits_mpjpe`, `fits_pa_mpjpe` (mm) and counts over the synthetic training datasets' hidden rows.

    datasets: synthetic `SpinImageDataset`s (`spin data synth`; their truth file, or the generator's
    meta beside them to re-draw it); others are skipped. Means are weighted by each dataset's fitted rows.
    """
    from spin.data.synthetic import hidden_truth
    from spin.errors import UserError

    results = []
    for dataset in datasets:
        path = dataset.annotations.path
        try:
            pose, betas = hidden_truth(path)
        except UserError:  # not synthetic data: no hidden truth to measure against
            continue
        results.append(fit_truth_error(store, dataset.name, pose, betas, dataset.annotations.has_smpl, body,
                                       threshold))
    fitted = sum(r.fitted for r in results if r.mpjpe is not None)
    if not results:
        return {}
    out: dict[str, float] = {"fits_hidden": sum(r.hidden for r in results), "fits_hidden_fitted": fitted}
    if fitted:
        out["fits_mpjpe"] = sum(r.mpjpe * r.fitted for r in results if r.mpjpe is not None) / fitted
        out["fits_pa_mpjpe"] = sum(r.pa_mpjpe * r.fitted for r in results if r.pa_mpjpe is not None) / fitted
    return out
