"""SPIN's training augmentation and the matching transforms of keypoints, poses, 3D joints and cameras.

One augmentation = (flip, in-plane rotation `rot_deg`, box scale factor `scale`, per-channel pixel
noise). SPIN applies it in this order: crop the box of side scale·(box side), rotated by rot_deg
about the crop centre; then mirror left-right if flip; then multiply each channel by its noise
factor. Everything geometric follows the same order:

* 2D keypoints: `p' = R(−rot)·(p − c)/scale + c` about the crop centre c, then mirrored
  (x → res − x) and permuted with FLIP_PERM_KEYPOINTS.
* 3D (camera frame, x right, y down, z forward): rotated about the optical axis by R_z(−rot) — the
  rotation that maps the projected points exactly as the 2D rule — then x → −x and permuted.
* SMPL pose: global orientation left-multiplied by R_z(−rot), then `spin.joints.flip_pose`.

`canonicalise_*` are the exact inverses (un-flip, then un-rotate). The pose and keypoint functions
take numpy arrays or torch tensors and return the same type; `flip`, `rot_deg`, `scale` are scalars
or per-sample (B,) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from spin.data.crop import crop_matrix
from spin.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from spin.joints import FLIP_PERM_GT, FLIP_PERM_KEYPOINTS, NUM_GT, NUM_KEYPOINTS, flip_keypoints, flip_pose

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)


@dataclass
class AugmentConfig:
    """SPIN's augmentation distribution (its released defaults).

    flip with probability `flip_prob`; rotation N(0, rot_std_deg) clipped to ±rot_max_deg and set
    to 0 with probability `rot_zero_prob`; box scale N(1, scale_std) clipped to 1 ± scale_clip;
    per-channel pixel factors U(1 − pixel_noise, 1 + pixel_noise).
    """

    flip_prob: float = 0.5
    rot_std_deg: float = 30.0
    rot_max_deg: float = 60.0
    rot_zero_prob: float = 0.6
    scale_std: float = 0.25
    scale_clip: float = 0.25
    pixel_noise: float = 0.4


@dataclass(frozen=True)
class AugmentParams:
    """One sample's drawn augmentation; the default is the identity."""

    flip: bool = False
    rot_deg: float = 0.0
    scale: float = 1.0
    pixel_noise: tuple[float, float, float] = (1.0, 1.0, 1.0)


def sample_augmentation(config: AugmentConfig, rng: np.random.Generator | None = None) -> AugmentParams:
    """Draw one augmentation with SPIN's distribution and draw order (flip, noise, rotation, scale, zero-rot).

    Without `rng` it draws from numpy's global generator, as SPIN's loader does; the trainer seeds
    that generator per draw (`spin.training.sampler.SeededDraws`) so augmentation is reproducible
    whichever data-loader worker produces the sample.
    """
    source: Any = np.random if rng is None else rng
    flip = bool(source.uniform() <= config.flip_prob)
    noise = source.uniform(1.0 - config.pixel_noise, 1.0 + config.pixel_noise, 3)
    rot = float(np.clip(_normal(source) * config.rot_std_deg, -config.rot_max_deg, config.rot_max_deg))
    scale = float(np.clip(_normal(source) * config.scale_std + 1.0, 1.0 - config.scale_clip,
                          1.0 + config.scale_clip))
    if source.uniform() <= config.rot_zero_prob:
        rot = 0.0
    return AugmentParams(flip=flip, rot_deg=rot, scale=scale,
                         pixel_noise=(float(noise[0]), float(noise[1]), float(noise[2])))


def _normal(source: Any) -> float:
    return float(source.randn() if hasattr(source, "randn") else source.standard_normal())


# ---------------------------------------------------------------------------------------------
# numpy/torch plumbing


def _to_torch(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.from_numpy(np.asarray(x)), True


def _back(x: torch.Tensor, was_numpy: bool, like_dtype: Any) -> Any:
    return x.numpy().astype(like_dtype, copy=False) if was_numpy else x.to(like_dtype)


def _per_sample(value: Any, batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Scalar or (B,) flip/rot/scale -> (B,) tensor."""
    t = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value, device=device)
    return t.to(dtype).reshape(-1).expand(batch) if t.numel() == 1 else t.to(dtype).reshape(batch)


def inplane_rotation(rot_deg: Any, dtype: torch.dtype = torch.float64,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """Camera-frame rotations R_z(−rot) (B, 3, 3) that SPIN applies for an in-plane rotation of rot_deg.

    In image coordinates (y down) it turns a projected point about the principal point exactly as
    `spin.data.crop.crop_matrix(..., rot_deg)` turns the crop.
    """
    rot = torch.as_tensor(np.asarray(rot_deg) if not isinstance(rot_deg, torch.Tensor) else rot_deg,
                          dtype=dtype, device=device).reshape(-1)
    radians = -rot * (np.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    return torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=-1).reshape(-1, 3, 3)


# ---------------------------------------------------------------------------------------------
# SMPL pose


def _rotate_global_orient(pose: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """pose (B, 72) with its global orientation left-multiplied by rotation (B, 3, 3); float64 inside."""
    orient = axis_angle_to_matrix(pose[:, :3].to(torch.float64))
    rotated = matrix_to_axis_angle(rotation @ orient).to(pose.dtype)
    # Leave un-rotated rows bit-identical (a round trip through matrices is exact only to rounding).
    unchanged = torch.isclose(rotation, torch.eye(3, dtype=rotation.dtype, device=rotation.device),
                              rtol=0.0, atol=0.0).flatten(1).all(1)
    return torch.cat([torch.where(unchanged[:, None], pose[:, :3], rotated), pose[:, 3:]], dim=1)


def augment_pose(pose: ArrayLike, flip: Any, rot_deg: Any) -> ArrayLike:
    """Canonical SMPL pose (B, 72) -> the pose seen in the augmented crop (SPIN's pose_processing).

    Rotates the global orientation by R_z(−rot_deg) (camera frame), then mirrors rows with flip.
    """
    p, was_numpy = _to_torch(pose)
    batch = p.shape[0]
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, p.device), device=p.device)
    p = _rotate_global_orient(p, rotation)
    f = _per_sample(flip, batch, torch.bool, p.device)
    p = torch.where(f[:, None], flip_pose(p), p)
    return _back(p, was_numpy, pose.dtype)


def canonicalise_pose(pose: ArrayLike, flip: Any, rot_deg: Any) -> ArrayLike:
    """Inverse of `augment_pose`: un-flip, then rotate the global orientation back by R_z(−rot)ᵀ."""
    p, was_numpy = _to_torch(pose)
    batch = p.shape[0]
    f = _per_sample(flip, batch, torch.bool, p.device)
    p = torch.where(f[:, None], flip_pose(p), p)
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, p.device), device=p.device)
    p = _rotate_global_orient(p, rotation.transpose(1, 2))
    return _back(p, was_numpy, pose.dtype)


# ---------------------------------------------------------------------------------------------
# 2D keypoints (crop pixels)


def augment_keypoints(keypoints: ArrayLike, flip: Any, rot_deg: Any, scale: Any, img_res: float) -> ArrayLike:
    """Canonical crop keypoints (B, 49, 3) (pixels of an img_res crop) -> augmented crop pixels.

    Equal to cropping the image keypoints with `crop_matrix(center, scale·box_scale, img_res,
    rot_deg)` and then mirroring: p' = R(−rot)(p − c)/scale + c, then `flip_keypoints`.
    Confidences are kept.
    """
    k, was_numpy = _to_torch(keypoints)
    batch = k.shape[0]
    rot = _per_sample(rot_deg, batch, torch.float64, k.device)
    rotation = inplane_rotation(rot, device=k.device)[:, :2, :2]
    s = _per_sample(scale, batch, torch.float64, k.device)
    half = img_res / 2.0
    xy = (k[..., :2].to(torch.float64) - half) @ rotation.transpose(1, 2) / s[:, None, None] + half
    out = torch.cat([xy.to(k.dtype), k[..., 2:]], dim=-1)
    f = _per_sample(flip, batch, torch.bool, k.device)
    out = torch.where(f[:, None, None], flip_keypoints(out, img_res), out)
    return _back(out, was_numpy, keypoints.dtype)


def canonicalise_keypoints(keypoints: ArrayLike, flip: Any, rot_deg: Any, scale: Any,
                           img_res: float) -> ArrayLike:
    """Inverse of `augment_keypoints`: un-mirror, then p = R(−rot)ᵀ·(p' − c)·scale + c."""
    k, was_numpy = _to_torch(keypoints)
    batch = k.shape[0]
    f = _per_sample(flip, batch, torch.bool, k.device)
    k = torch.where(f[:, None, None], flip_keypoints(k, img_res), k)
    rot = _per_sample(rot_deg, batch, torch.float64, k.device)
    rotation = inplane_rotation(rot, device=k.device)[:, :2, :2]
    s = _per_sample(scale, batch, torch.float64, k.device)
    half = img_res / 2.0
    xy = ((k[..., :2].to(torch.float64) - half) * s[:, None, None]) @ rotation + half
    out = torch.cat([xy.to(k.dtype), k[..., 2:]], dim=-1)
    return _back(out, was_numpy, keypoints.dtype)


# ---------------------------------------------------------------------------------------------
# 3D joints (camera frame)


def _flip_perm_3d(num_joints: int) -> np.ndarray:
    if num_joints == NUM_GT:
        return FLIP_PERM_GT
    if num_joints == NUM_KEYPOINTS:
        return FLIP_PERM_KEYPOINTS
    raise ValueError(f"3D joints must be the 24 GT joints or the 49 keypoints, got {num_joints}")


def _mirror_3d(joints: torch.Tensor) -> torch.Tensor:
    out = joints[:, torch.as_tensor(_flip_perm_3d(joints.shape[1]), device=joints.device)].clone()
    out[..., 0] = -out[..., 0]
    return out


def augment_joints3d(joints: ArrayLike, flip: Any, rot_deg: Any) -> ArrayLike:
    """3D joints (B, 24 or 49, 3 or 4) in the camera frame -> augmented (SPIN's j3d_processing).

    xyz rotated about the optical axis by R_z(−rot), then for flipped rows x → −x and the joints
    permuted (FLIP_PERM_GT for 24, FLIP_PERM_KEYPOINTS for 49). A 4th column (confidence) is kept.
    Rotation is about the camera origin, so pelvis-centred and camera-frame joints both work.
    """
    j, was_numpy = _to_torch(joints)
    batch = j.shape[0]
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, j.device), device=j.device)
    xyz = (j[..., :3].to(torch.float64) @ rotation.transpose(1, 2)).to(j.dtype)
    out = torch.cat([xyz, j[..., 3:]], dim=-1)
    f = _per_sample(flip, batch, torch.bool, j.device)
    out = torch.where(f[:, None, None], _mirror_3d(out), out)
    return _back(out, was_numpy, joints.dtype)


def canonicalise_joints3d(joints: ArrayLike, flip: Any, rot_deg: Any) -> ArrayLike:
    """Inverse of `augment_joints3d`."""
    j, was_numpy = _to_torch(joints)
    batch = j.shape[0]
    f = _per_sample(flip, batch, torch.bool, j.device)
    j = torch.where(f[:, None, None], _mirror_3d(j), j)
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, j.device), device=j.device)
    xyz = (j[..., :3].to(torch.float64) @ rotation).to(j.dtype)
    out = torch.cat([xyz, j[..., 3:]], dim=-1)
    return _back(out, was_numpy, joints.dtype)


# ---------------------------------------------------------------------------------------------
# Camera translation (focal 5000 in the 224 crop, principal point at the crop centre)


def augment_cam_t(cam_t: ArrayLike, root: ArrayLike, flip: Any, rot_deg: Any, scale: Any = 1.0) -> ArrayLike:
    """Canonical camera translation (B, 3) -> the one projecting the augmented body onto the augmented crop.

    root (B, 3): the point the body model's global orientation turns about (SMPL: the pelvis joint,
    `BodyOutput.smpl_joints[:, 0]`, which no pose moves). The root's camera position q = root +
    cam_t is rotated by R_z(−rot), mirrored (x → −x) if flip, and its depth multiplied by `scale`
    (a box `scale` times larger shrinks the body by 1/scale in the crop). Rotation and flip are
    exact (flip up to the body model's left-right asymmetry of the root, 2·|root_x|); scale is
    exact for the root and first-order for the rest of the body (relative error ~ body depth /
    camera distance · |1 − scale|, well under a pixel at focal 5000).
    """
    t, was_numpy = _to_torch(cam_t)
    r = torch.as_tensor(np.asarray(root) if not isinstance(root, torch.Tensor) else root,
                        device=t.device).to(torch.float64)
    batch = t.shape[0]
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, t.device), device=t.device)
    q = ((r + t.to(torch.float64))[:, None, :] @ rotation.transpose(1, 2))[:, 0]
    f = _per_sample(flip, batch, torch.bool, t.device)
    q = torch.where(f[:, None], q * torch.tensor([-1.0, 1.0, 1.0], dtype=q.dtype, device=q.device), q)
    q = torch.cat([q[:, :2], q[:, 2:] * _per_sample(scale, batch, torch.float64, t.device)[:, None]], dim=1)
    return _back(q - r, was_numpy, cam_t.dtype)


def canonicalise_cam_t(cam_t: ArrayLike, root: ArrayLike, flip: Any, rot_deg: Any,
                       scale: Any = 1.0) -> ArrayLike:
    """Inverse of `augment_cam_t` (same root)."""
    t, was_numpy = _to_torch(cam_t)
    r = torch.as_tensor(np.asarray(root) if not isinstance(root, torch.Tensor) else root,
                        device=t.device).to(torch.float64)
    batch = t.shape[0]
    q = r + t.to(torch.float64)
    q = torch.cat([q[:, :2], q[:, 2:] / _per_sample(scale, batch, torch.float64, t.device)[:, None]], dim=1)
    f = _per_sample(flip, batch, torch.bool, t.device)
    q = torch.where(f[:, None], q * torch.tensor([-1.0, 1.0, 1.0], dtype=q.dtype, device=q.device), q)
    rotation = inplane_rotation(_per_sample(rot_deg, batch, torch.float64, t.device), device=t.device)
    q = (q[:, None, :] @ rotation)[:, 0]
    return _back(q - r, was_numpy, cam_t.dtype)


# ---------------------------------------------------------------------------------------------
# Images


def crop_image(image: Image.Image | np.ndarray, center: Any, scale: float, res: int, rot_deg: float = 0.0,
               flip: bool = False) -> np.ndarray:
    """Crop the box (center (2,), side scale·200 px) rotated by rot_deg into a (res, res, 3) uint8 image.

    The same affine as `spin.data.crop.crop_matrix` (bilinear; outside the image is black, as in
    SPIN), then mirrored if flip. Boxes much larger than the crop are first box-filtered down by an
    integer factor so the crop does not alias.
    """
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    matrix = crop_matrix(center, scale, res, rot_deg)  # image -> crop, (2, 3)
    zoom = res / (200.0 * float(scale))
    factor = int(np.floor(1.0 / zoom)) if zoom < 0.5 else 1
    if factor > 1:
        pil = pil.reduce(factor)
        # A reduced pixel p_r covers the original p = factor·p_r (continuous coordinates).
        matrix = np.concatenate([matrix[:, :2] * factor, matrix[:, 2:]], axis=1)
    linear_inv = np.linalg.inv(matrix[:, :2])
    offset_inv = -linear_inv @ matrix[:, 2]
    # PIL samples the input at A·(output pixel centre) with A the crop -> image map.
    coefficients = (*linear_inv[0], offset_inv[0], *linear_inv[1], offset_inv[1])
    out = np.asarray(pil.transform((res, res), Image.Transform.AFFINE, coefficients,
                                   resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)))
    if flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def apply_pixel_noise(image: np.ndarray, pixel_noise: Any) -> np.ndarray:
    """Multiply each channel of a (H, W, 3) image by its factor, clipped to [0, 255]; float32."""
    return np.clip(image.astype(np.float32) * np.asarray(pixel_noise, dtype=np.float32), 0.0, 255.0)
