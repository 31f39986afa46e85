"""The pieces of one SPIN training step: predict, the loss terms, and the canonical-frame fit jobs."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from fitting_workers.jobs import FitJobBatch
from spin.body import BodyModel
from spin.camera import CropCamera
from spin.data.augment import canonicalise_cam_t, canonicalise_pose
from spin.geometry import matrix_to_axis_angle, perspective_projection, weak_perspective_to_cam_t
from spin.joints import JOINT_NAMES
from spin.losses import (
    LossConfig,
    camera_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    smpl_param_losses,
    total_loss,
    vertex_loss,
)
from spin.models import Regressor
from spin.training.supervision import Supervision

PELVIS = JOINT_NAMES.index("OP MidHip")  # model joint 0: the SMPL root the global rotation turns about


@dataclass
class Prediction:
    """rotmat (B,24,3,3), betas (B,10), cam (B,3) weak perspective, cam_t (B,3), joints (B,49,3),
    keypoints_2d (B,49,2) projected and normalised to [-1,1]; vertices (B,6890,3) or None;
    rotmat_iters (T,B,24,3,3) / betas_iters (T,B,10) every IEF iteration's estimate, or None."""

    rotmat: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    cam_t: torch.Tensor
    joints: torch.Tensor
    keypoints_2d: torch.Tensor
    vertices: torch.Tensor | None = None
    rotmat_iters: torch.Tensor | None = None
    betas_iters: torch.Tensor | None = None


def autocast_context(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision for the regressor on CUDA; a no-op elsewhere or when off."""
    if amp_dtype is None or device.type != "cuda":
        return nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype)


def project_normalised(joints: torch.Tensor, cam_t: torch.Tensor, camera: CropCamera) -> torch.Tensor:
    """Project joints (B,N,3) with cam_t (B,3) into the crop, normalised to [-1, 1] → (B,N,2)."""
    center = torch.zeros(2, device=joints.device, dtype=joints.dtype)
    return perspective_projection(joints, cam_t, camera.focal_length, center) / (camera.crop_res / 2.0)


def predict(model: Regressor, body: BodyModel, images: torch.Tensor, camera: CropCamera, need_vertices: bool,
            amp_dtype: torch.dtype | None = None, need_iterations: bool = False) -> Prediction:
    """Network forward, then the body model and the projection in float32.

    need_iterations: keep every IEF iteration's rotations and betas (HMR's adversarial prior)."""
    with autocast_context(images.device, amp_dtype):
        out = model(images, return_iterations=True) if need_iterations else model(images)
    if need_vertices:
        body_out = body(out.rotmat, out.betas)
        joints, vertices = body_out.joints, body_out.vertices
    else:
        joints, vertices = body.joints(out.rotmat, out.betas), None
    cam_t = weak_perspective_to_cam_t(out.cam, camera.focal_length, camera.crop_res)
    return Prediction(rotmat=out.rotmat, betas=out.betas, cam=out.cam, cam_t=cam_t, joints=joints,
                      keypoints_2d=project_normalised(joints, cam_t, camera), vertices=vertices,
                      rotmat_iters=out.rotmat_iters, betas_iters=out.betas_iters)


def loss_terms(pred: Prediction, batch: dict[str, Any], target: Supervision, body: BodyModel,
               config: LossConfig) -> dict[str, torch.Tensor]:
    """SPIN's loss terms for a batch (tensors already on the model's device)."""
    pose_loss, betas_loss = smpl_param_losses(pred.rotmat, pred.betas, target.pose, target.betas,
                                              target.valid)
    terms = {
        "keypoints_2d": keypoint_2d_loss(pred.keypoints_2d, batch["keypoints"], config.openpose_weight,
                                         config.gt_weight),
        "keypoints_3d": keypoint_3d_loss(pred.joints, batch["pose_3d"], batch["has_pose_3d"].bool()),
        "pose": pose_loss,
        "betas": betas_loss,
        "camera": camera_loss(pred.cam),
    }
    if config.vertex_weight > 0 and pred.vertices is not None:
        with torch.no_grad():
            target_vertices = body(target.pose, target.betas).vertices
        terms["vertices"] = vertex_loss(pred.vertices, target_vertices, target.valid)
    terms["total"] = total_loss(terms, config)
    return terms


def canonical_fit_jobs(pred: Prediction, batch: dict[str, Any], step: int = 0, round: int = 0) -> FitJobBatch:
    """The batch's detached predictions mapped back to each sample's canonical frame, as fitting jobs
    of training step `step` in round `round`."""
    flip, rot, scale = batch["flip"].bool().cpu(), batch["rot"].float().cpu(), batch["scale"].float().cpu()
    rotmat = pred.rotmat.detach().float().cpu()
    pose = matrix_to_axis_angle(rotmat).reshape(-1, 72)
    pose = torch.nan_to_num(pose)  # SPIN: a NaN from the conversion becomes 0
    pose = torch.as_tensor(canonicalise_pose(pose, flip, rot), dtype=torch.float32)
    root = pred.joints.detach().float().cpu()[:, PELVIS]
    cam_t = torch.as_tensor(canonicalise_cam_t(pred.cam_t.detach().float().cpu(), root, flip, rot, scale))
    return FitJobBatch(keys=list(batch["key"]), keypoints=batch["keypoints_crop"].float().cpu().numpy(),
                       pose=pose.numpy(), betas=pred.betas.detach().float().cpu().numpy(),
                       cam_t=cam_t.numpy(), step=step, round=round)
