"""SPIN's training losses as pure functions, and their weighted total.

All "mean" reductions match SPIN's `nn.MSELoss()` / `nn.L1Loss()` over the selected samples; the
selection is done with masks instead of boolean indexing so the graph has fixed shapes (no host
sync on CUDA, same cost on every DDP rank). With no selected sample a term is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spin.geometry import axis_angle_to_matrix

NUM_OPENPOSE = 25


@dataclass
class LossConfig:
    """Loss weights. Defaults are SPIN's released values (the total is multiplied by `scale`)."""

    keypoint_weight: float = 5.0  # 2D and 3D keypoints
    openpose_weight: float = 0.0  # 2D confidence multiplier of the 25 OpenPose joints
    gt_weight: float = 1.0  # 2D confidence multiplier of the 24 ground-truth joints
    pose_weight: float = 1.0  # MSE on rotation matrices against the supervising fit / GT
    beta_weight: float = 0.001
    vertex_weight: float = 0.0  # L1 per-vertex loss against the supervising mesh
    camera_weight: float = 1.0  # (exp(-10 s))^2 keeps the weak-perspective scale positive
    scale: float = 60.0
    # NBF's supervision modes (Omran et al. 2018, loss ablation): each switch drops exactly its
    # term(s) from the total, the weights above stay as they are. latent = rotation matrices + betas.
    latent: bool = True
    joints_3d: bool = True
    joints_2d: bool = True


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` (B, ...) over the samples where mask (B,) is true; 0 when none is."""
    mask = mask.to(values.dtype).reshape(-1, *([1] * (values.dim() - 1)))
    per_sample = values[0].numel()
    return (values * mask).sum() / (mask.sum() * per_sample).clamp(min=1.0)


def keypoint_2d_loss(pred: torch.Tensor, target: torch.Tensor, openpose_weight: float,
                     gt_weight: float) -> torch.Tensor:
    """Confidence-weighted squared error of 2D keypoints, normalised to [-1, 1].

    pred (B,49,2), target (B,49,3) with confidence last. OpenPose (first 25) and ground-truth
    (last 24) confidences are scaled by their own weights.
    """
    conf = target[..., 2:].clone()
    conf[:, :NUM_OPENPOSE] *= openpose_weight
    conf[:, NUM_OPENPOSE:] *= gt_weight
    return (conf * (pred - target[..., :2]) ** 2).mean()


def pelvis_centred(joints: torch.Tensor) -> torch.Tensor:
    """Subtract the mid-hip point of 24 ground-truth-superset joints (B,24,3) (Right/Left Hip = 2/3)."""
    return joints - 0.5 * (joints[:, 2:3] + joints[:, 3:4])


def keypoint_3d_loss(pred_joints: torch.Tensor, target: torch.Tensor,
                     has_pose_3d: torch.Tensor) -> torch.Tensor:
    """Pelvis-aligned, confidence-weighted squared error of the 24 ground-truth joints.

    pred_joints (B,49,3) the model's joints (the last 24 are compared), target (B,24,4) with
    confidence last, has_pose_3d (B,) bool.
    """
    pred = pelvis_centred(pred_joints[:, NUM_OPENPOSE:])
    gt = pelvis_centred(target[..., :3])
    return _masked_mean(target[..., 3:] * (pred - gt) ** 2, has_pose_3d)


def smpl_param_losses(pred_rotmat: torch.Tensor, pred_betas: torch.Tensor, target_pose: torch.Tensor,
                      target_betas: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE on rotation matrices and on betas, over samples with a valid target.

    pred_rotmat (B,24,3,3), pred_betas (B,10), target_pose (B,72) axis-angle, target_betas (B,10),
    valid (B,) bool → (pose loss, betas loss).
    """
    target_rotmat = axis_angle_to_matrix(target_pose.reshape(-1, 24, 3))
    return (_masked_mean((pred_rotmat - target_rotmat) ** 2, valid),
            _masked_mean((pred_betas - target_betas) ** 2, valid))


def vertex_loss(pred_vertices: torch.Tensor, target_vertices: torch.Tensor,
                valid: torch.Tensor) -> torch.Tensor:
    """L1 per-vertex loss (B,6890,3) vs (B,6890,3) over samples with a valid target."""
    return _masked_mean((pred_vertices - target_vertices).abs(), valid)


def camera_loss(pred_cam: torch.Tensor) -> torch.Tensor:
    """SPIN's camera term (exp(-10 s))², pred_cam (B,3) = (s, tx, ty): penalises s ≤ 0."""
    return (torch.exp(-10.0 * pred_cam[:, 0]) ** 2).mean()


def total_loss(terms: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """SPIN's weighted sum × scale of the terms `keypoints_2d`, `keypoints_3d`, `pose`, `betas`,
    `vertices` (optional), `camera`; the switches `joints_2d`, `joints_3d`, `latent` (pose and betas)
    leave their terms out."""
    total = config.camera_weight * terms["camera"]
    if config.joints_2d:
        total = total + config.keypoint_weight * terms["keypoints_2d"]
    if config.joints_3d:
        total = total + config.keypoint_weight * terms["keypoints_3d"]
    if config.latent:
        total = total + config.pose_weight * terms["pose"] + config.beta_weight * terms["betas"]
    if "vertices" in terms:
        total = total + config.vertex_weight * terms["vertices"]
    return config.scale * total
