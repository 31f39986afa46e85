"""SPIN's evaluation protocols (its `eval.py`) as pure functions: joint sets, centring, MPJPE,
reconstruction error (PA-MPJPE), PCK and AUC. Inputs in metres, per-sample outputs in mm (or
fractions for PCK/AUC).

- `h36m-p1`, `h36m-p2`: predicted joints = `J_regressor_h36m` (17, V) applied to the predicted
  vertices, minus the regressed pelvis (joint 0), H36M→J14; ground truth = the dataset's `S` as
  stored (already pelvis-centred by the preprocessing), J24→J14.
- `3dpw`: ground truth = the same regressor on the vertices of the ground-truth SMPL parameters
  with the sample's gender ('m' → male, anything else → female), pelvis-centred like the prediction.
- `mpi-inf-3dhp`: 17 joints (H36M→J17, J24→J17), plus PCK at 150 mm and AUC over 0–150 mm, before
  and after the similarity alignment.
- `synthetic`: this project's generic score (the model's own 24 ground-truth-superset joints,
  LSP14, hip-midpoint alignment; see `spin.evaluation.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spin.evaluation.metrics import procrustes_align
from spin.joints import LSP14_FROM_GT, LSP14_FROM_H36M17

H36M_TO_J14 = LSP14_FROM_H36M17
H36M_TO_J17 = np.concatenate([LSP14_FROM_H36M17, [0, 7, 9]]).astype(np.int64)
J24_TO_J14 = LSP14_FROM_GT
J24_TO_J17 = np.concatenate([LSP14_FROM_GT, [14, 16, 17]]).astype(np.int64)
H36M_PELVIS = 0
PCK_THRESHOLD_MM = 150.0
AUC_THRESHOLDS_MM = np.linspace(0.0, 150.0, 31)  # 5 mm steps, as in the MPI-INF-3DHP tables


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol: where the ground truth comes from and which joints are scored."""

    name: str
    gt_source: str  # "S" (the dataset's 3D joints), "smpl_gendered" (3DPW), "model" (synthetic)
    h36m_joints: np.ndarray | None  # indices into the 17 regressed joints
    gt_joints: np.ndarray | None  # indices into the 24 ground-truth joints (gt_source "S")
    pck: bool = False

    @property
    def needs_h36m_regressor(self) -> bool:
        return self.h36m_joints is not None

    def metric_names(self) -> tuple[str, ...]:
        names = ("mpjpe", "pa_mpjpe")
        if self.pck:
            names += ("pck", "auc", "pa_pck", "pa_auc")
        return names


PROTOCOLS: dict[str, Protocol] = {
    "synthetic": Protocol("synthetic", "model", None, None),
    "h36m-p1": Protocol("h36m-p1", "S", H36M_TO_J14, J24_TO_J14),
    "h36m-p2": Protocol("h36m-p2", "S", H36M_TO_J14, J24_TO_J14),
    "3dpw": Protocol("3dpw", "smpl_gendered", H36M_TO_J14, None),
    "mpi-inf-3dhp": Protocol("mpi-inf-3dhp", "S", H36M_TO_J17, J24_TO_J17, pck=True),
}
# SPIN's test file stems -> protocol, for choosing a default from the file name.
_FILE_STEMS = {"h36m_valid_protocol1": "h36m-p1", "h36m_valid_protocol2": "h36m-p2",
               "3dpw_test": "3dpw", "mpi_inf_3dhp_valid": "mpi-inf-3dhp", "mpi_inf_3dhp_test": "mpi-inf-3dhp"}


def protocol_for_file(stem: str) -> str:
    """The protocol SPIN uses for a test file of this name; "synthetic" for any other file."""
    return _FILE_STEMS.get(stem, "synthetic")


def regressed_joints(vertices: torch.Tensor, regressor: torch.Tensor, joints: np.ndarray) -> torch.Tensor:
    """SPIN's evaluation joints of meshes: regressor (17, V) @ vertices (B, V, 3), the chosen joints
    minus the regressed pelvis → (B, J, 3)."""
    full = torch.einsum("jv,bvc->bjc", regressor.to(vertices.dtype), vertices)
    return full[:, torch.as_tensor(joints, device=full.device)] - full[:, H36M_PELVIS:H36M_PELVIS + 1]


def dataset_joints(S: torch.Tensor, joints: np.ndarray) -> torch.Tensor:
    """The dataset's 3D joints as SPIN reads them: S (B, 24, 4) → chosen joints (B, J, 3), as stored."""
    return S[:, torch.as_tensor(joints, device=S.device), :3]


def _f64(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().double().cpu()


def joint_errors(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per-joint distances (B, J) in mm of already-centred joints (B, J, 3) in metres."""
    return (1000.0 * (_f64(pred) - _f64(gt)).norm(dim=-1)).numpy()


def aligned_joint_errors(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per-joint distances (B, J) in mm after the similarity Procrustes alignment of pred to gt."""
    p, g = _f64(pred), _f64(gt)
    return (1000.0 * (procrustes_align(p, g) - g).norm(dim=-1)).numpy()


def pck(errors_mm: np.ndarray, threshold_mm: float = PCK_THRESHOLD_MM) -> np.ndarray:
    """Per-sample fraction of joints within the threshold (error ≤ threshold, so that a perfect
    prediction has an AUC of 1): errors (B, J) mm → (B,)."""
    return (np.asarray(errors_mm) <= threshold_mm).mean(axis=1)


def auc(errors_mm: np.ndarray, thresholds_mm: np.ndarray = AUC_THRESHOLDS_MM) -> np.ndarray:
    """Per-sample area under the PCK curve, the mean PCK over the thresholds: (B, J) mm → (B,)."""
    errors = np.asarray(errors_mm)
    return np.stack([pck(errors, t) for t in thresholds_mm], axis=1).mean(axis=1)


def score(protocol: Protocol, pred: torch.Tensor, gt: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-sample metrics of one batch of centred joints (B, J, 3) metres under `protocol`."""
    raw, aligned = joint_errors(pred, gt), aligned_joint_errors(pred, gt)
    out = {"mpjpe": raw.mean(axis=1), "pa_mpjpe": aligned.mean(axis=1)}
    if protocol.pck:
        out.update(pck=pck(raw), auc=auc(raw), pa_pck=pck(aligned), pa_auc=auc(aligned))
    return out


def male_mask(gender: np.ndarray) -> np.ndarray:
    """SPIN's gender rule: 'm' → male, anything else → female. (N,) str/bytes → (N,) bool."""
    text = [g.decode() if isinstance(g, bytes) else str(g) for g in np.asarray(gender).reshape(-1)]
    return np.array([g.strip().lower() == "m" for g in text], dtype=bool)
