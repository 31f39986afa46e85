"""Evaluate a regressor on a SPIN-format test split: MPJPE, PA-MPJPE (mm, 14 LSP joints), vertex error,
and NBF's measures: mean joint-rotation error (rad), PCKh@0.5, and the share of implausible bodies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from spin.body import BodyModel
from spin.camera import CropCamera
from spin.evaluation.metrics import lsp14_pelvis, mpjpe, pa_mpjpe, per_vertex_error
from spin.evaluation.nbf_metrics import (
    body_plausibility,
    mean_joint_rotation_error,
    pckh,
)
from spin.geometry import matrix_to_axis_angle, perspective_projection, weak_perspective_to_cam_t
from spin.joints import LSP14_FROM_GT, NUM_OPENPOSE
from spin.models import Regressor


@dataclass
class EvalResult:
    """Dataset means (mm) and the per-sample predictions (canonical test images: no augmentation).

    `pve` and `joint_rotation_error` (radians, NBF's quaternion distance over the 24 SMPL joints) are
    None when no test sample has ground-truth SMPL; `pckh` (LSP's 14 joints, 50% of the head size,
    in the crop) None when no sample has a visible head; `implausible_frac` the share of predicted
    bodies with |β| > 3 or joint angles beyond the synthetic pose sampler's limits, `limit_excess`
    the mean over bodies of how far (radians, summed over joints and axes) beyond them. Prediction
    arrays: `pose` (N,72) axis-angle, `betas` (N,10), `cam` (N,3) weak perspective, `joints` (N,49,3) metres.
    """

    mpjpe: float
    pa_mpjpe: float
    pve: float | None
    count: int
    joint_rotation_error: float | None = None
    pckh: float | None = None
    implausible_frac: float | None = None
    limit_excess: float | None = None
    per_sample: dict[str, np.ndarray] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, float | int | None]:
        return {"mpjpe": self.mpjpe, "pa_mpjpe": self.pa_mpjpe, "pve": self.pve, "count": self.count,
                "joint_rotation_error": self.joint_rotation_error, "pckh": self.pckh,
                "implausible_frac": self.implausible_frac, "limit_excess": self.limit_excess}


def lsp14(joints_gt24: torch.Tensor) -> torch.Tensor:
    """The 14 LSP-order joints (B,14,C) of the 24-joint ground-truth superset (B,24,C)."""
    return joints_gt24[:, torch.as_tensor(LSP14_FROM_GT, device=joints_gt24.device)]


@torch.no_grad()
def evaluate_model(model: Regressor, body: BodyModel, loader: DataLoader, device: torch.device | str = "cpu",
                   max_samples: int = 0, amp_dtype: torch.dtype | None = None,
                   camera: CropCamera | None = None) -> EvalResult:
    """Run `model` over `loader` (batches of `SpinImageDataset` items) and score it.

    Predicted joints: the 24 ground-truth-superset joints of the model's 49, LSP14 subset; ground
    truth: `pose_3d` (24,4) where `has_pose_3d`, else the same joints of the ground-truth SMPL
    body where `has_smpl` (as SPIN does for 3DPW). Vertex error against the ground-truth SMPL mesh
    where `has_smpl`. `max_samples` > 0 stops after that many samples. `camera`: the crop camera
    the weak-perspective prediction is projected with for PCKh (default `CropCamera()`).
    """
    camera = camera or CropCamera()
    was_training = model.training
    model.eval()
    device = torch.device(device)
    errors: dict[str, list[np.ndarray]] = {"mpjpe": [], "pa_mpjpe": [], "pve": [], "joint_rotation_error": [],
                                           "pckh": [], "implausible": [], "limit_excess": []}
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
            for key, value in nbf_errors(out.rotmat, out.cam, joints, batch, camera).items():
                errors[key].append(value)
            pose = matrix_to_axis_angle(out.rotmat).reshape(-1, 72).cpu()
            implausible, limit_excess = body_plausibility(pose, out.betas.cpu())
            errors["implausible"].append(implausible)
            errors["limit_excess"].append(limit_excess)
            preds["pose"].append(pose.numpy())
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
        joint_rotation_error=mean_or_none(per_sample.get("joint_rotation_error")),
        pckh=mean_or_none(per_sample.get("pckh")),
        implausible_frac=mean_or_none(per_sample.get("implausible")),
        limit_excess=mean_or_none(per_sample.get("limit_excess")),
        per_sample=per_sample,
        predictions={k: np.concatenate(v) for k, v in preds.items() if v},
    )


def nbf_errors(rotmat: torch.Tensor, cam: torch.Tensor, joints: torch.Tensor, batch: dict,
               camera: CropCamera) -> dict[str, np.ndarray]:
    """NBF's per-sample measures of one batch: `joint_rotation_error` (radians, over the 24 SMPL
    joints) of the rows with ground-truth SMPL (absent when none has it), `pckh` (B,) of every row
    (NaN where no head is visible). rotmat (B,24,3,3), cam (B,3) weak perspective, joints (B,49,3)
    the predicted body's joints; batch: `SpinImageDataset` items (`has_smpl`, `pose`, `keypoints`)."""
    out = {"pckh": _pckh(joints, cam, batch["keypoints"], camera)}
    has_smpl = batch["has_smpl"].bool()
    if has_smpl.any():
        out["joint_rotation_error"] = mean_joint_rotation_error(
            rotmat[has_smpl.to(rotmat.device)].float().cpu(), batch["pose"][has_smpl])
    return out


def _pckh(joints: torch.Tensor, cam: torch.Tensor, keypoints: torch.Tensor, camera: CropCamera) -> np.ndarray:
    """Per-sample PCKh (B,) of the 14 LSP joints: model joints (B,49,3) projected with the weak-perspective
    cam (B,3) against the batch's 2D keypoints (B,49,3), both in normalised crop coordinates."""
    cam_t = weak_perspective_to_cam_t(cam.float(), camera.focal_length, camera.crop_res)
    centre = torch.zeros(2, device=joints.device, dtype=joints.dtype)
    projected = perspective_projection(joints, cam_t, camera.focal_length, centre) / (camera.crop_res / 2.0)
    return pckh(lsp14(projected[:, NUM_OPENPOSE:]).cpu(), lsp14(keypoints[:, NUM_OPENPOSE:]).cpu())


def mean_or_none(values: np.ndarray | None) -> float | None:
    """Mean of the finite per-sample values (bools count as 0/1), None when there are none."""
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else None
