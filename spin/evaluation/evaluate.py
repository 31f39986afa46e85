"""Evaluate a regressor on a SPIN-format test split: MPJPE, PA-MPJPE (mm, 14 LSP joints), vertex error."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from spin.body import BodyModel
from spin.evaluation.metrics import lsp14_pelvis, mpjpe, pa_mpjpe, per_vertex_error
from spin.geometry import matrix_to_axis_angle
from spin.joints import LSP14_FROM_GT, NUM_OPENPOSE
from spin.models import Regressor


@dataclass
class EvalResult:
    """Dataset means (mm) and the per-sample predictions (canonical test images: no augmentation).

    `pve` is None when no test sample has ground-truth SMPL. Prediction arrays: `pose` (N,72)
    axis-angle, `betas` (N,10), `cam` (N,3) weak perspective, `joints` (N,49,3) metres.
    """

    mpjpe: float
    pa_mpjpe: float
    pve: float | None
    count: int
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | int | None]:
        return {"mpjpe": self.mpjpe, "pa_mpjpe": self.pa_mpjpe, "pve": self.pve, "count": self.count}


def lsp14(joints_gt24: torch.Tensor) -> torch.Tensor:
    """The 14 LSP-order joints (B,14,C) of the 24-joint ground-truth superset (B,24,C)."""
    return joints_gt24[:, torch.as_tensor(LSP14_FROM_GT, device=joints_gt24.device)]


@torch.no_grad()
def evaluate_model(model: Regressor, body: BodyModel, loader: DataLoader, device: torch.device | str = "cpu",
                   max_samples: int = 0, amp_dtype: torch.dtype | None = None) -> EvalResult:
    """Run `model` over `loader` (batches of `SpinImageDataset` items) and score it.

    Predicted joints: the 24 ground-truth-superset joints of the model's 49, LSP14 subset; ground
    truth: `pose_3d` (24,4) where `has_pose_3d`, else the same joints of the ground-truth SMPL
    body where `has_smpl` (as SPIN does for 3DPW). Vertex error against the ground-truth SMPL mesh
    where `has_smpl`. `max_samples` > 0 stops after that many samples.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device)
    errors: dict[str, list[np.ndarray]] = {"mpjpe": [], "pa_mpjpe": [], "pve": []}
    preds: dict[str, list[np.ndarray]] = {"pose": [], "betas": [], "cam": [], "joints": [], "key": []}
    seen = 0
    try:
        for batch in loader:
            images = batch["img"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(images)
            joints = body.joints(out.rotmat, out.betas)
            has_smpl = batch["has_smpl"].bool()
            gt24 = batch["pose_3d"][..., :3].clone()
            has_3d = batch["has_pose_3d"].bool()
            from_smpl = has_smpl & ~has_3d  # e.g. 3DPW: GT joints from the GT mesh
            if from_smpl.any():
                mask = from_smpl.to(device)
                gt_joints = body.joints(batch["pose"].to(device)[mask], batch["betas"].to(device)[mask])
                gt24[from_smpl] = gt_joints[:, NUM_OPENPOSE:].cpu()
            has_gt = has_3d | from_smpl
            if has_gt.any():
                pred14 = lsp14(joints[:, NUM_OPENPOSE:])[has_gt.to(device)].cpu()
                gt14 = lsp14(gt24)[has_gt]
                errors["mpjpe"].append(mpjpe(pred14, gt14))
                errors["pa_mpjpe"].append(pa_mpjpe(pred14, gt14))
            if has_smpl.any():
                mask = has_smpl.to(device)
                pred_body = body(out.rotmat[mask], out.betas[mask])
                gt_body = body(batch["pose"][has_smpl].to(device), batch["betas"][has_smpl].to(device))
                errors["pve"].append(per_vertex_error(
                    pred_body.vertices.cpu(), gt_body.vertices.cpu(),
                    lsp14_pelvis(lsp14(pred_body.joints[:, NUM_OPENPOSE:])).cpu(),
                    lsp14_pelvis(lsp14(gt_body.joints[:, NUM_OPENPOSE:])).cpu()))
            preds["pose"].append(matrix_to_axis_angle(out.rotmat).reshape(-1, 72).cpu().numpy())
            preds["betas"].append(out.betas.cpu().numpy())
            preds["cam"].append(out.cam.cpu().numpy())
            preds["joints"].append(joints.cpu().numpy())
            preds["key"].append(np.asarray(batch["key"]))
            seen += images.shape[0]
            if max_samples and seen >= max_samples:
                break
    finally:
        model.train(was_training)
    per_sample = {k: np.concatenate(v) for k, v in errors.items() if v}
    return EvalResult(
        mpjpe=float(per_sample["mpjpe"].mean()) if "mpjpe" in per_sample else float("nan"),
        pa_mpjpe=float(per_sample["pa_mpjpe"].mean()) if "pa_mpjpe" in per_sample else float("nan"),
        pve=float(per_sample["pve"].mean()) if "pve" in per_sample else None,
        count=int(len(per_sample.get("mpjpe", []))),
        per_sample=per_sample,
        predictions={k: np.concatenate(v) for k, v in preds.items() if v},
    )
