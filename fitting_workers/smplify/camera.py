"""SMPLify's camera stage solved by batched Levenberg–Marquardt: 6 unknowns, 9 residuals per sample.

SPIN's camera stage minimises `losses.camera_loss` over the global orientation and the camera
translation with 100 Adam steps. With the posed body fixed, that loss is a small least-squares
problem: 4 torso joints × 2 pixel residuals and one depth residual, in 3 rotation and 3 translation
unknowns. Its Jacobian is analytic (perspective projection of a rotated point), so each LM
iteration is a few dozen elementwise ops and one batched 6×6 solve, and a handful of iterations
reach the minimum that many first-order steps only approach. The rotation is updated on SO(3)
(R ← exp([δ]×)·R), so it has no axis-angle singularity. Every sample has its own damping and
accepts a step only when it lowers its loss; the loop has a fixed length and no host syncs.
"""

from __future__ import annotations

import torch

from spin.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from spin.joints import TORSO_GT, TORSO_OPENPOSE

# Largest rotation (rad) one LM step may make.
MAX_ROTATION_STEP = 0.5


def torso_targets(keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint indices `(B, 4)` and residual weights `(B, 4)` of `losses.camera_loss`'s torso term.

    The OpenPose hips and shoulders (weight 1) when all four are confident, else the ground-truth
    ones with weight 1 where visible and 0 where not — exactly the joints camera_loss sums.
    """
    op = torch.as_tensor(TORSO_OPENPOSE, device=keypoints.device)
    gt = torch.as_tensor(TORSO_GT, device=keypoints.device)
    use_op = keypoints[:, op, 2].min(dim=-1).values > 0
    index = torch.where(use_op[:, None], op, gt)
    visible = (keypoints[:, gt, 2] > 0).to(keypoints.dtype)
    weight = torch.where(use_op[:, None], torch.ones_like(visible), visible)
    return index, weight


def _gather(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """points `(B, N, C)` at index `(B, K)` -> `(B, K, C)`."""
    return torch.gather(points, 1, index[..., None].expand(-1, -1, points.shape[-1]))


def _residuals(centred: torch.Tensor, pelvis: torch.Tensor, rot: torch.Tensor, cam_t: torch.Tensor,
               target: torch.Tensor, weight: torch.Tensor, init_depth: torch.Tensor, focal_length: float,
               img_res: int, depth_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Residuals `(B, 9)`, rotated points `(B, 4, 3)` and camera-frame points `(B, 4, 3)`.

    centred `(B, 4, 3)` torso joints about the pelvis, pelvis `(B, 1, 3)`, rot `(B, 3, 3)`,
    target `(B, 4, 2)` pixels, weight `(B, 4)`, init_depth and depth_weight `(B,)`.
    """
    rotated = centred @ rot.transpose(1, 2)
    points = rotated + pelvis + cam_t[:, None]
    pixels = focal_length * points[..., :2] / points[..., 2:3] + img_res / 2.0
    reprojection = (pixels - target) * weight[..., None]
    depth = depth_weight * (cam_t[:, 2] - init_depth)
    return torch.cat([reprojection.flatten(1), depth[:, None]], dim=1), rotated, points


def _jacobian(rotated: torch.Tensor, points: torch.Tensor, weight: torch.Tensor, focal_length: float,
              depth_weight: torch.Tensor) -> torch.Tensor:
    """Jacobian `(B, 9, 6)` of `_residuals` w.r.t. [δ (left rotation increment), Δcam_t]."""
    x, y, z = points.unbind(-1)
    inv_z = 1.0 / z
    zero = torch.zeros_like(z)
    # d(pixel)/d(point): f·[1/z, 0, −x/z²] and f·[0, 1/z, −y/z²]  -> (B, 4, 2, 3)
    d_pixel = focal_length * torch.stack([torch.stack([inv_z, zero, -x * inv_z**2], -1),
                                          torch.stack([zero, inv_z, -y * inv_z**2], -1)], -2)
    d_pixel = d_pixel * weight[..., None, None]
    # d(exp([δ]×)·q)/dδ at 0 = −[q]×; d(point)/d(cam_t) = I
    qx, qy, qz = rotated.unbind(-1)
    minus_skew = torch.stack([torch.stack([zero, qz, -qy], -1), torch.stack([-qz, zero, qx], -1),
                              torch.stack([qy, -qx, zero], -1)], -2)  # (B, 4, 3, 3)
    j_rot = d_pixel @ minus_skew  # (B, 4, 2, 3)
    reprojection = torch.cat([j_rot, d_pixel], dim=-1).flatten(1, 2)  # (B, 8, 6)
    depth = torch.cat([reprojection.new_zeros(points.shape[0], 5), depth_weight[:, None]], dim=1)
    return torch.cat([reprojection, depth[:, None]], dim=1)


def solve_camera(centred: torch.Tensor, pelvis: torch.Tensor, orient: torch.Tensor, cam_t: torch.Tensor,
                 init_cam_t: torch.Tensor, keypoints: torch.Tensor, sample_weight: torch.Tensor,
                 iters: int, focal_length: float, img_res: int, depth_weight: float,
                 damping: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise `losses.camera_loss` per sample by LM; returns orient `(B, 3)` and cam_t `(B, 3)`.

    centred `(B, 49, 3)`: the 49 joints of the unrotated posed body minus its pelvis, pelvis
    `(B, 1, 3)` (the joints at orientation R are centred·Rᵀ + pelvis); orient, cam_t, init_cam_t
    `(B, 3)` (the depth term pulls t_z to init_cam_t's); keypoints `(B, 49, 3)`; sample_weight `(B,)`
    (0 = a failed sample, left where it is). Runs `iters` iterations; damping: LM's initial λ
    (relative to the Gauss–Newton matrix's diagonal).
    """
    index, weight = torso_targets(keypoints)
    weight = weight * sample_weight[:, None]
    torso = _gather(centred, index)
    target = _gather(keypoints[..., :2], index)
    init_depth = init_cam_t[:, 2]
    rot = axis_angle_to_matrix(orient)
    lam = torch.full_like(sample_weight, damping)
    eye = torch.eye(6, dtype=centred.dtype, device=centred.device)
    depth_w = depth_weight * sample_weight

    def evaluate(rot: torch.Tensor, cam_t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        residual, rotated, points = _residuals(torso, pelvis, rot, cam_t, target, weight, init_depth,
                                               focal_length, img_res, depth_w)
        return residual, rotated, points, residual.square().sum(dim=1)

    residual, rotated, points, loss = evaluate(rot, cam_t)
    for _ in range(iters):
        jac = _jacobian(rotated, points, weight, focal_length, depth_w)
        jtj = jac.transpose(1, 2) @ jac
        grad = (jac.transpose(1, 2) @ residual[..., None])[..., 0]
        diag = torch.diagonal(jtj, dim1=1, dim2=2)
        system = jtj + (lam[:, None] * (diag + 1e-6))[..., None] * eye
        step = -torch.linalg.solve_ex(system, grad)[0]
        # A Gauss-Newton rotation step is only trusted over a bounded angle (the model is linear in δ).
        shrink = MAX_ROTATION_STEP / step[:, :3].norm(dim=1, keepdim=True).clamp_min(MAX_ROTATION_STEP)
        step = torch.cat([step[:, :3] * shrink, step[:, 3:]], dim=1)
        trial_rot = axis_angle_to_matrix(step[:, :3]) @ rot
        trial_t = cam_t + step[:, 3:]
        t_residual, t_rotated, t_points, t_loss = evaluate(trial_rot, trial_t)
        # Accept only a finite decrease in front of the camera; else damp harder and retry next time.
        ok = torch.isfinite(t_loss) & (t_loss < loss) & (t_points[..., 2] > 0).all(dim=1)
        rot = torch.where(ok[:, None, None], trial_rot, rot)
        cam_t = torch.where(ok[:, None], trial_t, cam_t)
        residual = torch.where(ok[:, None], t_residual, residual)
        rotated = torch.where(ok[:, None, None], t_rotated, rotated)
        points = torch.where(ok[:, None, None], t_points, points)
        loss = torch.where(ok, t_loss, loss)
        lam = torch.where(ok, lam / 3.0, lam * 10.0).clamp(1e-7, 1e7)
    return matrix_to_axis_angle(rot), cam_t
