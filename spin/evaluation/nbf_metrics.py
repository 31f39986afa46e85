"""NBF's error measures (Omran et al. 2018): mean joint-rotation error and per-sample PCKh.

Rotation error: per joint the angle of the rotation between prediction and truth, the quaternion
distance 2·acos(|⟨q_pred, q_true⟩|) in radians (in [0, π]), averaged over joints. PCKh: a 2D joint
is correct when it lies within `fraction` (NBF: 50%) of the head size of its true position; the
head size is the true head-top-to-neck distance of LSP's 14 joints (neck 12, head top 13).
"""

from __future__ import annotations

import numpy as np
import torch

from spin.geometry import axis_angle_to_matrix, matrix_to_quaternion

ArrayOrTensor = np.ndarray | torch.Tensor
LSP14_NECK, LSP14_HEAD_TOP = 12, 13
PCKH_FRACTION = 0.5


def _as_float64(x: ArrayOrTensor) -> torch.Tensor:
    return (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).detach().to(torch.float64)


def _as_rotmats(x: ArrayOrTensor) -> torch.Tensor:
    """(B,J,3,3) rotations, or (B,3J) / (B,J,3) axis-angle, → (B,J,3,3) float64."""
    x = _as_float64(x)
    if x.shape[-2:] == (3, 3) and x.dim() == 4:
        return x
    return axis_angle_to_matrix(x.reshape(x.shape[0], -1, 3))


def joint_rotation_errors(pred: ArrayOrTensor, gt: ArrayOrTensor) -> torch.Tensor:
    """Per-joint rotation angle (B,J) radians between pred and gt: 2·acos(|⟨q_pred, q_gt⟩|).

    pred, gt: rotation matrices (B,J,3,3) or axis-angle (B,3J). Computed as the angle of the
    relative rotation's quaternion with atan2, which equals the acos form but keeps full precision
    for small errors (acos is flat at 1).
    """
    r_pred, r_gt = _as_rotmats(pred), _as_rotmats(gt)
    if r_pred.shape != r_gt.shape:
        raise ValueError(f"rotation shapes differ: {tuple(r_pred.shape)} vs {tuple(r_gt.shape)}")
    quat = matrix_to_quaternion(r_pred.transpose(-1, -2) @ r_gt)  # relative rotation, w ≥ 0
    return 2.0 * torch.atan2(quat[..., 1:].norm(dim=-1), quat[..., 0].abs())


def mean_joint_rotation_error(pred: ArrayOrTensor, gt: ArrayOrTensor,
                              joints: np.ndarray | list[int] | None = None) -> np.ndarray:
    """NBF's mean joint-rotation error per sample (B,) radians over `joints` (default all given)."""
    errors = joint_rotation_errors(pred, gt)
    if joints is not None:
        errors = errors[:, torch.as_tensor(np.asarray(joints), dtype=torch.long)]
    return errors.mean(dim=1).numpy()


def pckh(pred: ArrayOrTensor, gt: ArrayOrTensor, fraction: float = PCKH_FRACTION,
         neck: int = LSP14_NECK, head_top: int = LSP14_HEAD_TOP) -> np.ndarray:
    """Per-sample PCKh (B,) in [0, 1]: share of visible joints within fraction · head size of the truth.

    pred (B,J,2+) and gt (B,J,3) 2D joints in pixels, gt's last column its visibility (> 0 counts),
    LSP's 14-joint order by default (neck 12, head top 13; SPIN's 24 ground-truth joints start
    with these 14). A sample whose neck or head top is not visible, or that has no visible joint,
    has no head size: NaN (leave it out of the mean, e.g. with np.nanmean).
    """
    p, g = _as_float64(pred)[..., :2], _as_float64(gt)
    visible = g[..., 2] > 0
    head = (g[:, head_top, :2] - g[:, neck, :2]).norm(dim=-1)
    has_head = visible[:, neck] & visible[:, head_top] & (head > 0)
    correct = ((p - g[..., :2]).norm(dim=-1) <= fraction * head[:, None]) & visible
    count = visible.sum(dim=1)
    score = correct.sum(dim=1).to(torch.float64) / count.clamp(min=1)
    return torch.where(has_head & (count > 0), score, torch.full_like(score, float("nan"))).numpy()


BETAS_PLAUSIBLE = 3.0  # |β| beyond this (in shape-space standard deviations) is not a plausible body


def joint_limit_excess(pose: ArrayOrTensor) -> np.ndarray:
    """(B,23,3) radians by which each body joint's axis-angle component lies beyond the pose
    sampler's limits (`spin.body.pose_sampler.JOINT_LIMITS`), 0 inside; pose (B,72) axis-angle.
    The global orientation (joint 0) is not judged."""
    from spin.body.pose_sampler import JOINT_LIMITS

    p = _as_float64(pose).reshape(-1, 24, 3)[:, 1:].numpy()
    lo, hi = JOINT_LIMITS[1:, :, 0], JOINT_LIMITS[1:, :, 1]
    return np.maximum(lo - p, 0.0) + np.maximum(p - hi, 0.0)


def body_plausibility(pose: ArrayOrTensor, betas: ArrayOrTensor,
                      tolerance: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Both plausibility measures from one `joint_limit_excess`: (B,) bool `implausible_bodies` and
    (B,) radians `limit_excess_per_body`; pose (B,72) axis-angle, betas (B,10)."""
    excess = joint_limit_excess(pose)
    beyond = (excess > tolerance).any(axis=(1, 2))
    implausible = beyond | (np.abs(_as_float64(betas).numpy()) > BETAS_PLAUSIBLE).any(axis=1)
    return implausible, excess.sum(axis=(1, 2))


def implausible_bodies(pose: ArrayOrTensor, betas: ArrayOrTensor, tolerance: float = 1e-3) -> np.ndarray:
    """(B,) bool: bodies with any |β| > 3 or a body joint's axis-angle beyond the pose sampler's limits.

    pose (B,72) axis-angle, betas (B,10); see `joint_limit_excess`.
    """
    return body_plausibility(pose, betas, tolerance)[0]


def limit_excess_per_body(pose: ArrayOrTensor) -> np.ndarray:
    """(B,) radians: the sum over body joints and axes of `joint_limit_excess` — how far a body is
    from the plausible range, where `implausible_bodies` only says whether it left it."""
    return joint_limit_excess(pose).sum(axis=(1, 2))
