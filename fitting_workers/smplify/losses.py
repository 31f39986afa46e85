"""SMPLify's loss terms as pure batched functions, and THE stored fit-quality score.

Every function returns one value per sample `(B,)`, never a batch sum: the optimisers mask and
line-search each sample on its own, so one bad sample cannot steer or poison the others.
Camera: focal length `focal_length`, principal point at the crop centre (img_res/2, img_res/2),
no rotation (the camera looks down +z), as in SPIN.
"""

from __future__ import annotations

import torch

from spin.camera import CROP_RES, FOCAL_LENGTH
from spin.geometry import perspective_projection
from spin.joints import GT_IGNORED, OPENPOSE_IGNORED, TORSO_GT, TORSO_OPENPOSE

# Joints SPIN gives confidence 0 in the body stage and in the quality score: OpenPose neck and
# hips (placed differently from the model's joints) and the ground-truth hips.
IGNORED_JOINTS: tuple[int, ...] = tuple(int(i) for i in OPENPOSE_IGNORED) + tuple(int(i) for i in GT_IGNORED)


def gmof(residual: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman–McClure robustifier σ²x² / (σ² + x²), elementwise (any shape)."""
    squared = residual**2
    sigma_squared = sigma**2
    return sigma_squared * squared / (sigma_squared + squared)


def project_joints(joints: torch.Tensor, cam_t: torch.Tensor, focal_length: float,
                   img_res: int) -> torch.Tensor:
    """Crop pixels `(B, N, 2)` of model joints `(B, N, 3)` translated by `cam_t (B, 3)`."""
    center = joints.new_full((2,), img_res / 2.0)
    return perspective_projection(joints, cam_t, focal_length, center)


def fitting_confidence(keypoints: torch.Tensor) -> torch.Tensor:
    """Per-joint confidence `(B, 49)` of keypoints `(B, 49, 3)` with SPIN's ignored joints set to 0."""
    confidence = keypoints[..., 2].clone()
    confidence[..., list(IGNORED_JOINTS)] = 0.0
    return confidence


def reprojection_per_joint(projected: torch.Tensor, keypoints: torch.Tensor, confidence: torch.Tensor,
                           sigma: float) -> torch.Tensor:
    """SPIN's robust reprojection term per joint `(B, 49)`: conf² · Σ_xy GMoF(proj − kp, σ).

    projected `(B, 49, 2)`, keypoints `(B, 49, 3)` (only x, y are read), confidence `(B, 49)`.
    """
    return confidence**2 * gmof(projected - keypoints[..., :2], sigma).sum(dim=-1)


def fit_quality(joints: torch.Tensor, cam_t: torch.Tensor, keypoints: torch.Tensor,
                focal_length: float = FOCAL_LENGTH, img_res: int = CROP_RES,
                sigma: float = 100.0) -> torch.Tensor:
    """THE stored loss of a fit `(B,)` (DESIGN "Fit quality"; SPIN's threshold 100 applies to it).

    Per joint conf² · Σ_xy GMoF(proj − kp, σ=100), averaged over all 49 joints, with SPIN's ignored
    joints (OP Neck, OP RHip, OP LHip, Right Hip, Left Hip) at confidence 0. joints `(B, 49, 3)` from
    the body model, cam_t `(B, 3)`, keypoints `(B, 49, 3)` in crop pixels with confidence.
    """
    projected = project_joints(joints, cam_t, focal_length, img_res)
    return reprojection_per_joint(projected, keypoints, fitting_confidence(keypoints), sigma).mean(dim=-1)


def camera_loss(joints: torch.Tensor, cam_t: torch.Tensor, init_cam_t: torch.Tensor, keypoints: torch.Tensor,
                focal_length: float, img_res: int, depth_weight: float) -> torch.Tensor:
    """SPIN's camera-stage loss per sample `(B,)`.

    Squared reprojection error of the OpenPose hips and shoulders when all four are confident, else of
    the ground-truth hips and shoulders, plus depth_weight² · (t_z − t_z,init)². Unlike SPIN, the
    ground-truth fallback skips joints whose visibility is 0 (SPIN would pull them toward (0, 0)).
    joints `(B, 49, 3)`, cam_t and init_cam_t `(B, 3)`, keypoints `(B, 49, 3)`.
    """
    torso_op, torso_gt = list(TORSO_OPENPOSE), list(TORSO_GT)
    projected = project_joints(joints, cam_t, focal_length, img_res)
    error_op = ((keypoints[:, torso_op, :2] - projected[:, torso_op]) ** 2).sum(dim=-1)
    error_gt = ((keypoints[:, torso_gt, :2] - projected[:, torso_gt]) ** 2).sum(dim=-1)
    error_gt = error_gt * (keypoints[:, torso_gt, 2] > 0).to(error_gt.dtype)
    use_op = keypoints[:, torso_op, 2].min(dim=-1).values > 0
    reprojection = torch.where(use_op, error_op.sum(dim=-1), error_gt.sum(dim=-1))
    depth = depth_weight**2 * (cam_t[:, 2] - init_cam_t[:, 2]) ** 2
    return reprojection + depth


def body_data_term(joints: torch.Tensor, cam_t: torch.Tensor, keypoints: torch.Tensor,
                   confidence: torch.Tensor, focal_length: float, img_res: int, sigma: float) -> torch.Tensor:
    """Body-stage reprojection term per sample `(B,)`: Σ over joints of `reprojection_per_joint`."""
    projected = project_joints(joints, cam_t, focal_length, img_res)
    return reprojection_per_joint(projected, keypoints, confidence, sigma).sum(dim=-1)


def anchor_term(body_pose: torch.Tensor, betas: torch.Tensor, init_body_pose: torch.Tensor,
                init_betas: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """Anchor to the network's initialisation (Pavlakos et al. 2018) per sample `(B,)`.

    Σ ρ(θ − θ_init) + Σ ρ(β − β_init) over body_pose `(B, 69)` and betas `(B, 10)`, with ρ the
    Geman–McClure penalty `gmof(·, sigma)` (a deviation well beyond sigma costs at most sigma², so the
    keypoints can still overrule a wrong prediction), or ρ(x) = x² when sigma is 0.
    """
    deviation = torch.cat([body_pose - init_body_pose, betas - init_betas], dim=-1)
    penalty = gmof(deviation, sigma) if sigma > 0 else deviation**2
    return penalty.sum(dim=-1)
