"""Score given fits (static fits, imported fits) as SPIN does at each training step.

SPIN recomputes the loss of a stored fit from the fit's 49 joints, a camera translation estimated
from the 24 ground-truth joints and the sample's 2D keypoints (its `estimate_translation`, focal
5000 in the 224-px crop), and its SMPLify fitting loss. Here the loss is the stored loss definition
(`fit_quality`, DESIGN "Fit quality"), so a scored fit is comparable with every SMPLify fit of the
same sample, and the same failure rules hold (too few confident keypoints, non-finite input, a
camera behind the image plane): a failed sample gets FAILED_LOSS and is never stored.
"""

from __future__ import annotations

import numpy as np
import torch

from fitting_workers.smplify.config import SmplifyConfig
from fitting_workers.smplify.fit import (
    CAMERA_BEHIND,
    DIVERGED,
    FAILED_LOSS,
    NONFINITE_INPUT,
    TOO_FEW_KEYPOINTS,
)
from fitting_workers.smplify.losses import fit_quality, fitting_confidence
from spin.geometry import estimate_cam_t
from spin.joints import NUM_OPENPOSE

ArrayLike = np.ndarray | torch.Tensor


def _tensor(x: ArrayLike, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.array(x) if not torch.is_tensor(x) else x).to(device=device, dtype=dtype)


@torch.no_grad()
def score_fits(body: torch.nn.Module, pose: ArrayLike, betas: ArrayLike, keypoints: ArrayLike,
               config: SmplifyConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss (B,) float32, cam_t (B, 3) float32, failure (B,) int8) of fits pose (B, 72), betas (B, 10)
    against keypoints (B, 49, 3) in crop pixels with confidence.

    `body` is a `spin.body.BodyModel` (its fast 49-joint path); `config` gives focal length, crop
    size, σ and `min_keypoints` (default `SmplifyConfig()`). failure codes are those of
    `fitting_workers.smplify.FAILURE_REASONS`; failed samples carry FAILED_LOSS and a finite cam_t.
    """
    config = config if config is not None else SmplifyConfig()
    dtype = getattr(body, "dtype", torch.float32)
    device = next((b.device for b in body.buffers()), torch.device("cpu"))
    pose_t, betas_t, kp = (_tensor(a, device, dtype) for a in (pose, betas, keypoints))
    batch = kp.shape[0]
    if kp.shape != (batch, 49, 3) or pose_t.shape != (batch, 72) or betas_t.shape != (batch, 10):
        raise ValueError("score_fits expects pose (B,72), betas (B,10), keypoints (B,49,3); got "
                         f"{tuple(pose_t.shape)}, {tuple(betas_t.shape)}, {tuple(kp.shape)}")
    failure = torch.zeros(batch, dtype=torch.int8, device=device)
    if batch == 0:
        return np.zeros(0, np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.int8)
    finite = torch.isfinite(kp).flatten(1).all(1) & torch.isfinite(pose_t).all(1)
    bad = ~(finite & torch.isfinite(betas_t).all(1))
    failure[bad] = NONFINITE_INPUT
    confident = (torch.nan_to_num(fitting_confidence(kp)) > 0).sum(dim=1)
    few = ~bad & (confident < config.min_keypoints)
    failure[few] = TOO_FEW_KEYPOINTS
    bad |= few
    # Bad samples are zeroed so that they cannot poison the batched solve; their results are replaced.
    kp = torch.where(bad[:, None, None], torch.zeros_like(kp), kp)
    pose_t = torch.where(bad[:, None], torch.zeros_like(pose_t), pose_t)
    betas_t = torch.where(bad[:, None], torch.zeros_like(betas_t), betas_t)
    joints = body.joints(pose_t, betas_t)
    # SPIN's estimate_translation: the 24 ground-truth joints and their keypoints' confidences.
    cam_t = estimate_cam_t(joints[:, NUM_OPENPOSE:], kp[:, NUM_OPENPOSE:], config.focal_length,
                           config.img_res)
    behind = ~bad & ~(torch.isfinite(cam_t).all(1) & (cam_t[:, 2] > 0))
    failure[behind] = CAMERA_BEHIND
    bad |= behind
    fallback = cam_t.new_tensor([0.0, 0.0, 2 * config.focal_length / (0.9 * config.img_res)])
    cam_t = torch.where(bad[:, None], fallback.expand(batch, 3), cam_t)
    loss = fit_quality(joints, cam_t, kp, config.focal_length, config.img_res, config.sigma)
    diverged = ~bad & ~torch.isfinite(loss)
    failure[diverged] = DIVERGED
    bad |= diverged
    loss = torch.where(bad, torch.full_like(loss, FAILED_LOSS), loss)
    return (loss.cpu().numpy().astype(np.float32), cam_t.cpu().numpy().astype(np.float32),
            failure.cpu().numpy().astype(np.int8))


def score_in_batches(body: torch.nn.Module, pose: np.ndarray, betas: np.ndarray, keypoints: np.ndarray,
                     config: SmplifyConfig | None = None, batch_size: int = 1024,
                     on_progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`score_fits` over N rows in batches of `batch_size`: (loss (N,), cam_t (N, 3), failure (N,)).

    pose (N, 72), betas (N, 10), keypoints (N, 49, 3) may be memory-mapped; `on_progress(done, total)`
    is called after every batch."""
    count = len(pose)
    loss = np.empty(count, np.float32)
    cam_t = np.empty((count, 3), np.float32)
    failure = np.empty(count, np.int8)
    for start in range(0, count, batch_size):
        part = slice(start, min(count, start + batch_size))
        loss[part], cam_t[part], failure[part] = score_fits(
            body, np.asarray(pose[part]), np.asarray(betas[part]), np.asarray(keypoints[part]), config)
        if on_progress is not None:
            on_progress(part.stop, count)
    return loss, cam_t, failure
