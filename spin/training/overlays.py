"""Predicted keypoints drawn over the network's input image (wandb and the round folders)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

from spin.data.datasets import IMAGENET_MEAN, IMAGENET_STD

GT_SLICE = slice(25, 49)  # draw the 24 ground-truth-superset joints; the OpenPose ones duplicate them


def denormalise(image: torch.Tensor) -> np.ndarray:
    """(3,R,R) ImageNet-normalised tensor → (R,R,3) uint8."""
    rgb = image.detach().float().cpu().numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return (np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)


def keypoint_overlay(image: torch.Tensor, predicted: torch.Tensor, target: torch.Tensor | None = None,
                     size: int = 256) -> np.ndarray:
    """The input image with predicted keypoints (red) and the target's confident ones (green).

    image (3,R,R) normalised; predicted (49,2) and target (49,3) in [-1,1] (+ confidence).
    Returns (size,size,3) uint8.
    """
    canvas = Image.fromarray(denormalise(image)).resize((size, size), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)

    def to_px(xy: np.ndarray) -> np.ndarray:
        return (xy + 1.0) * 0.5 * size

    radius = max(2, size // 100)
    if target is not None:
        tgt = target.detach().float().cpu().numpy()[GT_SLICE]
        for (x, y), conf in zip(to_px(tgt[:, :2]), tgt[:, 2], strict=True):
            if conf > 0:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=(0, 200, 0), width=2)
    for x, y in to_px(predicted.detach().float().cpu().numpy()[GT_SLICE]):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(230, 30, 30))
    return np.asarray(canvas)


# ------------------------------------------------------------------------------------ mesh overlays
MESH_COLOURS = ((120, 200, 120), (110, 150, 240), (240, 170, 90))  # fitted, predicted, a third mesh
KEYPOINT_COLOUR = (0, 220, 0)
REPROJECTION_COLOUR = (235, 30, 30)


def _as_uint8_image(image: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(image, torch.Tensor):
        return denormalise(image) if image.ndim == 3 and image.shape[0] == 3 else image.cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"mesh_overlay expects an (H, W, 3) image, got {image.shape}")
    return image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)


def mesh_overlay(image: np.ndarray | torch.Tensor, vertices_list, faces: np.ndarray, cam_t_list,
                 keypoints: np.ndarray | None = None, projected=None, *, focal_length: float | None = None,
                 crop_res: int | None = None, alpha: float = 0.75,
                 colours: tuple[tuple[int, int, int], ...] = MESH_COLOURS) -> np.ndarray:
    """Meshes drawn over a person crop, z-buffered against each other and flat-shaded, with the 2D
    keypoints (green rings, confidence > 0) and their reprojections (red dots, a line to their
    keypoint).

    image: (R, R, 3) uint8 crop, or the network's (3, R, R) ImageNet-normalised tensor.
    vertices_list: meshes (V, 3) in the model frame (metres); cam_t_list: their camera translations
    (3,) for SPIN's crop camera (focal length `focal_length` in a `crop_res` crop, default 5000 /
    224, scaled to R). keypoints (49, 3) and projected (49, 2) — or a list of (49, 2), one per mesh —
    in `crop_res` crop pixels. Returns (R, R, 3) uint8.
    """
    from spin.camera import CROP_RES, FOCAL_LENGTH
    from spin.data.render import face_shading, rasterize

    base = _as_uint8_image(image)
    size = base.shape[0]
    crop_res = crop_res or CROP_RES
    to_image = size / crop_res
    focal = (focal_length or FOCAL_LENGTH) * to_image
    faces = np.asarray(faces, dtype=np.int64)
    cams = [np.asarray(c, dtype=np.float64).reshape(3) for c in cam_t_list]
    meshes = [np.asarray(v, dtype=np.float64).reshape(-1, 3) + c
              for v, c in zip(vertices_list, cams, strict=True)]
    out = base.astype(np.float32)
    if meshes:
        offsets = np.cumsum([0] + [len(m) for m in meshes[:-1]])
        points = np.concatenate(meshes)
        all_faces = np.concatenate([faces + o for o in offsets])
        owner = np.repeat(np.arange(len(meshes)), len(faces))
        depth = points[:, 2]
        safe = np.where(depth > 1e-9, depth, np.inf)
        pixels = focal * points[:, :2] / safe[:, None] + size / 2.0
        pixels = np.where(np.isfinite(pixels), pixels, -1e6)
        face_index, _ = rasterize(np.concatenate([pixels, depth[:, None]], axis=1), all_faces, size)
        covered = face_index >= 0
        if covered.any():
            hit = face_index[covered]
            seen, inverse = np.unique(hit, return_inverse=True)
            shade = face_shading(points, all_faces[seen])[inverse]
            palette = np.asarray([colours[i % len(colours)] for i in range(len(meshes))], np.float32)
            colour = palette[owner[hit]] * shade[:, None].astype(np.float32)
            out[covered] = (1 - alpha) * out[covered] + alpha * colour
    canvas = Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    radius = max(2, size // 90)
    kp = None if keypoints is None else np.asarray(keypoints, dtype=np.float64)
    if projected is not None:
        sets = projected if isinstance(projected, (list, tuple)) else [projected]
        for proj in sets:
            proj = np.asarray(proj, dtype=np.float64)[:, :2] * to_image
            for j, (x, y) in enumerate(proj):
                if not np.isfinite([x, y]).all():
                    continue
                if kp is not None and kp[j, 2] > 0:
                    draw.line([(x, y), (kp[j, 0] * to_image, kp[j, 1] * to_image)], fill=REPROJECTION_COLOUR)
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=REPROJECTION_COLOUR)
    if kp is not None:
        for x, y, conf in kp:
            if conf > 0 and np.isfinite([x, y]).all():
                x, y = x * to_image, y * to_image
                box = [x - radius, y - radius, x + radius, y + radius]
                draw.ellipse(box, outline=KEYPOINT_COLOUR, width=2)
    return np.asarray(canvas)


def save_png(image: np.ndarray, path) -> None:
    """Write an (H, W, 3) uint8 image as a PNG that appears complete or not at all."""
    from spin.atomic_io import atomic_output

    with atomic_output(path) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, format="PNG")
