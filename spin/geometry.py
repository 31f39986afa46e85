"""Rotations, camera projection and SPIN's camera-translation estimate (torch, batched, differentiable)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Below this squared angle the Rodrigues coefficients use their Taylor series, which keeps both the
# value and the gradient finite at the zero rotation.
_SMALL_ANGLE2 = 1e-6


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrices."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. axis_angle (..., 3) -> rotation matrices (..., 3, 3).

    Exact at zero (no epsilon added to the angle) and differentiable everywhere.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < _SMALL_ANGLE2
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    sin_over = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    one_minus_cos_over = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    # K² = v vᵀ - θ² I, so R = (1 - b θ²) I + a K + b v vᵀ (no tiny batched matmul needed)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    outer = axis_angle[..., :, None] * axis_angle[..., None, :]
    diagonal = (1.0 - one_minus_cos_over * theta2) * eye
    return diagonal + sin_over * _skew(axis_angle) + one_minus_cos_over * outer


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (..., 4) as (w, x, y, z) with w >= 0.

    Picks the best-conditioned of the four classic formulas per matrix, so it is stable near 180°.
    """
    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    q_abs = torch.stack(
        [1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22], dim=-1
    )
    q_abs = torch.sqrt(torch.clamp(q_abs, min=1e-12))
    candidates = torch.stack(
        [
            torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
            torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
            torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
            torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
        ],
        dim=-2,
    ) / (2.0 * q_abs[..., None])
    best = q_abs.argmax(dim=-1)
    quat = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    quat = F.normalize(quat, dim=-1)
    return torch.where(quat[..., :1] < 0, -quat, quat)


def quaternion_to_axis_angle(quat: torch.Tensor) -> torch.Tensor:
    """Quaternions (..., 4) as (w, x, y, z) -> axis-angle (..., 3) with angle in [0, π]."""
    quat = torch.where(quat[..., :1] < 0, -quat, quat)
    xyz = quat[..., 1:]
    norm2 = (xyz * xyz).sum(-1, keepdim=True)
    small = norm2 < 1e-12
    norm = torch.where(small, torch.ones_like(norm2), norm2).sqrt()
    half = torch.atan2(norm, quat[..., :1])
    # axis_angle = xyz * angle / |xyz|; near zero angle / |xyz| -> 2 / w
    scale = torch.where(small, 2.0 / quat[..., :1].clamp(min=1e-12), 2.0 * half / norm)
    return xyz * scale


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), angle in [0, π]."""
    return quaternion_to_axis_angle(matrix_to_quaternion(matrix))


def rot6d_to_matrix(rot6d: torch.Tensor) -> torch.Tensor:
    """SPIN's 6D rotation representation (..., 6) -> rotation matrices (..., 3, 3).

    The 6 numbers are reshaped to (3, 2); its columns are Gram-Schmidt orthonormalised into the
    first two columns of the matrix, the third is their cross product.
    """
    x = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    b1 = F.normalize(x[..., 0], dim=-1)
    a2 = x[..., 1]
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> SPIN's 6D representation (..., 6) (first two columns, row-major)."""
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def perspective_projection(
    points: torch.Tensor,
    cam_t: torch.Tensor,
    focal_length: float | torch.Tensor,
    center: torch.Tensor,
) -> torch.Tensor:
    """Pinhole projection without rotation; the camera looks down +z.

    points (B, N, 3), cam_t (B, 3) added to the points, focal_length a number or (B,) tensor,
    center (B, 2) or (2,) principal point in pixels. Returns (B, N, 2) pixel coordinates.
    """
    p = points + cam_t[:, None, :]
    f = torch.as_tensor(focal_length, dtype=points.dtype, device=points.device)
    if f.ndim == 1:
        f = f[:, None, None]
    center = torch.as_tensor(center, dtype=points.dtype, device=points.device)
    if center.ndim == 1:
        center = center[None]
    return f * p[..., :2] / p[..., 2:3] + center[:, None, :]


def estimate_cam_t(
    joints3d: torch.Tensor,
    keypoints: torch.Tensor,
    focal_length: float = 5000.0,
    img_res: int = 224,
) -> torch.Tensor:
    """SPIN's camera translation: weighted least squares on the linearised projection equations.

    joints3d (B, N, 3) model joints; keypoints (B, N, 3) pixel x, y and confidence in an
    ``img_res`` crop with the principal point at its centre. Each joint contributes two equations
    weighted by sqrt(confidence). Returns cam_t (B, 3). SPIN itself passes only the 24 GT joints
    (``[:, 25:]``); callers choose. A sample with no confident joint gets SPIN's mean camera
    (0, 0, 2f / (0.9 img_res)).
    """
    dtype = joints3d.dtype
    s = joints3d.to(torch.float64)
    kp = keypoints.to(torch.float64)
    batch, n = s.shape[:2]
    f = float(focal_length)
    c = img_res / 2.0
    xy2d = kp[..., :2]
    w = kp[..., 2].clamp(min=0).sqrt()  # (B, N)
    # Rows per joint: f*tx + 0*ty + (c - u)*tz = (u - c)*Z - f*X  (and the same for y)
    ones = torch.ones_like(w)
    zeros = torch.zeros_like(w)
    q_x = torch.stack([f * ones, zeros, c - xy2d[..., 0]], dim=-1)
    q_y = torch.stack([zeros, f * ones, c - xy2d[..., 1]], dim=-1)
    q = torch.stack([q_x, q_y], dim=2).reshape(batch, 2 * n, 3)
    rhs = ((xy2d - c) * s[..., 2:3] - f * s[..., :2]).reshape(batch, 2 * n)
    w2 = w.repeat_interleave(2, dim=1)
    q = q * w2[..., None]
    rhs = rhs * w2
    a = q.transpose(1, 2) @ q
    b = (q.transpose(1, 2) @ rhs[..., None])[..., 0]
    has_data = w.sum(1) > 1e-8
    eye = torch.eye(3, dtype=a.dtype, device=a.device)
    # Samples without data get an identity system (their result is replaced below) so the batched
    # solve never sees a singular matrix.
    a = torch.where(has_data[:, None, None], a, eye)
    trans = torch.linalg.solve(a, b)
    default = torch.tensor([0.0, 0.0, 2.0 * f / (0.9 * img_res)], dtype=trans.dtype, device=trans.device)
    trans = torch.where(has_data[:, None], trans, default)
    return trans.to(dtype)


def weak_perspective_to_cam_t(pred_cam: torch.Tensor, focal_length: float, img_res: int) -> torch.Tensor:
    """Weak-perspective camera (s, tx, ty) (B, 3) -> translation (tx, ty, 2f / (img_res·s + 1e-9)) (B, 3)."""
    s, tx, ty = pred_cam.unbind(-1)
    return torch.stack([tx, ty, 2.0 * focal_length / (img_res * s + 1e-9)], dim=-1)
