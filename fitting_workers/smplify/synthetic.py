"""Synthetic SMPLify problems with known answers, for the tests and `benchmarks/smplify.py`.

A person is a plausible body pose (`sample_body_pose`), random betas, a global orientation facing
the camera (upright in the image, random yaw) and a camera translation that fills a 224-px crop the
way SPIN's crops do; keypoints are the projections of the model's 49 joints plus pixel noise. The
initialisation perturbs every parameter, standing in for a network's prediction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fitting_workers.smplify.fit import PELVIS
from spin.body.pose_sampler import JOINT_LIMITS, sample_body_pose
from spin.camera import CROP_RES, FOCAL_LENGTH
from spin.geometry import axis_angle_to_matrix, matrix_to_axis_angle


@dataclass
class SyntheticProblems:
    """Ground truth, keypoints and a perturbed start (numpy float32).

    gt_pose `(N, 72)`, gt_betas `(N, 10)`, gt_cam_t `(N, 3)`, keypoints `(N, 49, 3)` in crop pixels,
    init_pose `(N, 72)`, init_betas `(N, 10)`, init_cam_t `(N, 3)`.
    """

    gt_pose: np.ndarray
    gt_betas: np.ndarray
    gt_cam_t: np.ndarray
    keypoints: np.ndarray
    init_pose: np.ndarray
    init_betas: np.ndarray
    init_cam_t: np.ndarray

    def __len__(self) -> int:
        return len(self.gt_pose)

    def slice(self, part: slice) -> SyntheticProblems:
        return SyntheticProblems(**{name: getattr(self, name)[part] for name in self.__dataclass_fields__})


def facing_orientation(yaw: np.ndarray, tilt: np.ndarray) -> np.ndarray:
    """Global orientations `(N, 3)` axis-angle: upright in the image (π about x), then yaw and tilt (rad)."""
    zero = np.zeros_like(yaw)
    flip = axis_angle_to_matrix(torch.tensor([np.pi, 0.0, 0.0], dtype=torch.float64))
    yaw_m = axis_angle_to_matrix(torch.as_tensor(np.stack([zero, yaw, zero], -1), dtype=torch.float64))
    tilt_m = axis_angle_to_matrix(torch.as_tensor(np.stack([tilt, zero, zero], -1), dtype=torch.float64))
    return matrix_to_axis_angle(tilt_m @ flip @ yaw_m).numpy().astype(np.float32)


def make_problems(body: torch.nn.Module, n: int, seed: int = 0, pose_scale: float = 1.0,
                  keypoint_noise_px: float = 1.0, missing_fraction: float = 0.1, pose_noise: float = 0.15,
                  orient_noise: float = 0.1, betas_noise: float = 0.5, depth_noise: float = 0.05,
                  max_yaw: float = np.pi / 3, far_side_drop: float = 0.0,
                  focal_length: float = FOCAL_LENGTH, img_res: int = CROP_RES) -> SyntheticProblems:
    """n synthetic people from `body` (a BodyModel) and their perturbed initialisations.

    pose_scale scales the sampled body poses about the rest pose: < 1 gives easy poses, > 1 more
    extreme ones (then clipped to the sampler's joint limits). Yaw is uniform in ±max_yaw rad (wider:
    more side and back views). missing_fraction of the keypoints get confidence 0 (and coordinates 0,
    as SPIN's files store missing joints); far_side_drop adds self-occlusion: each joint more than
    5 cm farther from the camera than the pelvis is also dropped with this probability. The init adds
    N(0, pose_noise) rad per body-pose number, N(0, orient_noise) rad to the global orientation,
    N(0, betas_noise) to betas, scales depth by 1 + N(0, depth_noise) and shifts x/y.
    """
    rng = np.random.default_rng(seed)
    body_pose = pose_scale * sample_body_pose(n, rng)
    if pose_scale > 1:
        limits = JOINT_LIMITS[1:].reshape(69, 2)
        body_pose = np.clip(body_pose, limits[:, 0], limits[:, 1]).astype(np.float32)
    orient = facing_orientation(rng.uniform(-max_yaw, max_yaw, n), rng.normal(0.0, 0.1, n))
    gt_pose = np.concatenate([orient, body_pose], axis=1).astype(np.float32)
    gt_betas = np.clip(rng.normal(0.0, 1.0, (n, 10)), -2.5, 2.5).astype(np.float32)
    box_fill = rng.uniform(0.75, 1.0, n)  # person height as a fraction of the crop, like SPIN's scale
    depth = 2 * focal_length / (img_res * box_fill)
    gt_cam_t = np.stack([rng.normal(0, 0.03, n), rng.normal(0.0, 0.03, n), depth], -1).astype(np.float32)

    device = next(iter(body.buffers())).device
    with torch.no_grad():
        joints = body.joints(torch.as_tensor(gt_pose, device=device),
                             torch.as_tensor(gt_betas, device=device))
        joints = joints.cpu().double().numpy() + gt_cam_t[:, None, :]
    pixels = focal_length * joints[..., :2] / joints[..., 2:3] + img_res / 2.0
    pixels += rng.normal(0.0, keypoint_noise_px, pixels.shape)
    confidence = (rng.uniform(size=pixels.shape[:2]) >= missing_fraction).astype(np.float64)
    if far_side_drop > 0:
        behind = joints[..., 2] > joints[:, PELVIS, 2:3] + 0.05
        confidence *= ~(behind & (rng.uniform(size=behind.shape) < far_side_drop))
    keypoints = np.concatenate([pixels * confidence[..., None], confidence[..., None]], -1).astype(np.float32)

    init_pose = gt_pose.copy()
    init_pose[:, :3] = matrix_to_axis_angle(
        axis_angle_to_matrix(torch.as_tensor(rng.normal(0, orient_noise, (n, 3)))) @
        axis_angle_to_matrix(torch.as_tensor(gt_pose[:, :3], dtype=torch.float64))).numpy()
    init_pose[:, 3:] += rng.normal(0.0, pose_noise, (n, 69))
    init_betas = gt_betas + rng.normal(0.0, betas_noise, (n, 10))
    init_cam_t = gt_cam_t.copy()
    init_cam_t[:, :2] += rng.normal(0.0, 0.02, (n, 2))
    init_cam_t[:, 2] *= 1.0 + rng.normal(0.0, depth_noise, n)
    return SyntheticProblems(gt_pose=gt_pose, gt_betas=gt_betas, gt_cam_t=gt_cam_t, keypoints=keypoints,
                             init_pose=init_pose.astype(np.float32), init_betas=init_betas.astype(np.float32),
                             init_cam_t=init_cam_t.astype(np.float32))


def save_problems(problems: SyntheticProblems, folder: Path) -> tuple[Path, Path]:
    """Write problems as a SPIN-format dataset whose box is the 224 crop itself, plus their INIT.npz.

    Returns (data.npz, init.npz) in `folder`: what `spin fit` and `spin fits init` read.
    """
    from spin.data.spin_format import save_spin_npz

    n = len(problems)
    data, init = Path(folder) / "data.npz", Path(folder) / "init.npz"
    save_spin_npz(data, imgname=np.array([f"{i:04d}.jpg" for i in range(n)]),
                  center=np.full((n, 2), CROP_RES / 2.0), scale=np.full(n, CROP_RES / 200.0),
                  openpose=problems.keypoints[:, :25], part=problems.keypoints[:, 25:])
    np.savez(init, pose=problems.init_pose, betas=problems.init_betas, cam_t=problems.init_cam_t)
    return data, init
