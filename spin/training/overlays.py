"""Predicted keypoints drawn over the network's input image (wandb and the round folders)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
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
