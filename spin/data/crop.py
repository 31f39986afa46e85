"""SPIN's person-crop transform in floating point: image pixels → pixels of a square res×res crop.

The crop is the square box of side scale·200 pixels around `center`, resized to res×res and
optionally rotated by `rot_deg` degrees about the crop centre (SPIN's `get_transform`). SPIN's own
loader rounds mapped keypoints to int(T·p) + 1; these functions return the exact T·p.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def crop_matrix(center: ArrayLike, scale: ArrayLike, res: int, rot_deg: ArrayLike = 0.0) -> np.ndarray:
    """Affine image→crop matrices `(..., 2, 3)` (float64); center `(..., 2)`, scale and rot_deg `(...)`.

    A single box (center (2,), scalar scale) gives one (2, 3) matrix. A positive `rot_deg` rotates the
    crop's content the way SPIN's augmentation does (the matrix applies the rotation by −rot_deg).
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    rot = np.asarray(rot_deg, dtype=np.float64)
    batch = np.broadcast_shapes(center.shape[:-1], scale.shape, rot.shape)
    side = 200.0 * np.broadcast_to(scale, batch)
    zoom = res / side
    # Unrotated crop: x' = res/h · x + res·(0.5 − cx/h), and the same for y.
    shift = res * (0.5 - np.broadcast_to(center, (*batch, 2)) / side[..., None])
    radians = -np.broadcast_to(rot, batch) * np.pi / 180.0
    cos, sin = np.cos(radians), np.sin(radians)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (..., 2, 2)
    half = res / 2.0
    # Rotate about the crop centre: x'' = R (x' − c) + c.
    linear = rotation * zoom[..., None, None]
    offset = np.einsum("...ij,...j->...i", rotation, shift - half) + half
    return np.concatenate([linear, offset[..., None]], axis=-1)


def to_crop(points: ArrayLike, center: ArrayLike, scale: ArrayLike, res: int,
            rot_deg: ArrayLike = 0.0) -> np.ndarray:
    """Map image-pixel points `(..., K, 2)` into crop pixels `(..., K, 2)` (float64).

    Batched: points (N, K, 2) with center (N, 2), scale (N,) and rot_deg scalar or (N,); or one box:
    points (K, 2) with center (2,) and a scalar scale.
    """
    points = np.asarray(points, dtype=np.float64)
    matrix = crop_matrix(center, scale, res, rot_deg)
    linear, offset = matrix[..., :2], matrix[..., 2]
    return np.matmul(points, np.swapaxes(linear, -1, -2)) + offset[..., None, :]


def from_crop(points: ArrayLike, center: ArrayLike, scale: ArrayLike, res: int,
              rot_deg: ArrayLike = 0.0) -> np.ndarray:
    """Inverse of `to_crop`: crop pixels `(..., K, 2)` back to image pixels `(..., K, 2)`."""
    points = np.asarray(points, dtype=np.float64)
    matrix = crop_matrix(center, scale, res, rot_deg)
    inverse = np.linalg.inv(matrix[..., :2])
    return np.matmul(points - matrix[..., None, :, 2], np.swapaxes(inverse, -1, -2))
