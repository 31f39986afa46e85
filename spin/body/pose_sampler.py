"""Plausible SMPL body poses within joint limits (for the synthetic GMM prior and synthetic data).

SMPL's joint frames are aligned with the body frame in the T-pose (x: the body's left, y: up,
z: forward), so each axis-angle component has a simple meaning: for a left knee, +x bends the
shin backwards; for a left elbow, -y folds the forearm forward; for a left shoulder, +z raises the
arm. Right-side limits are the mirror image (y and z negated). A pose is drawn from one of a few
activities (standing, walking, sitting/crouching, arms raised, reaching, bending) as a mean plus
moderate noise, folded back into the joint limits, and mirrored left-right with probability 1/2 so
the distribution is symmetric like flip augmentation assumes.
"""

from __future__ import annotations

import numpy as np

from spin.joints import FLIP_PERM_POSE, FLIP_PERM_SMPL, FLIP_SIGN_POSE, NUM_SMPL_JOINTS

# (lo, hi) radians per axis-angle component (x, y, z), for the left side and the spine/neck/head.
_LEFT_AND_MIDDLE_LIMITS: dict[int, tuple[tuple[float, float], ...]] = {
    1: ((-1.8, 0.5), (-0.6, 0.6), (-0.35, 0.9)),  # left hip: -x flexes the thigh forward, +z abducts
    3: ((-0.3, 0.6), (-0.4, 0.4), (-0.3, 0.3)),  # spine1: +x bends forward
    4: ((0.0, 2.4), (-0.15, 0.15), (-0.1, 0.1)),  # left knee: bends one way only
    6: ((-0.2, 0.4), (-0.3, 0.3), (-0.2, 0.2)),  # spine2
    7: ((-0.6, 0.8), (-0.35, 0.35), (-0.3, 0.3)),  # left ankle
    9: ((-0.2, 0.4), (-0.3, 0.3), (-0.2, 0.2)),  # spine3
    10: ((-0.4, 0.5), (-0.1, 0.1), (-0.1, 0.1)),  # left foot (toes)
    12: ((-0.5, 0.6), (-0.6, 0.6), (-0.4, 0.4)),  # neck
    13: ((-0.2, 0.2), (-0.3, 0.3), (-0.3, 0.45)),  # left collar
    15: ((-0.4, 0.5), (-0.6, 0.6), (-0.3, 0.3)),  # head
    16: ((-1.2, 1.2), (-1.6, 0.7), (-1.5, 1.3)),  # left shoulder: -y swings forward, +z raises
    18: ((-0.6, 0.6), (-2.5, 0.0), (-0.2, 0.2)),  # left elbow: folds forward only
    20: ((-0.8, 0.8), (-0.4, 0.4), (-1.0, 1.0)),  # left wrist
    22: ((-0.3, 0.3), (-0.2, 0.2), (-0.6, 0.6)),  # left hand
}


def _joint_limits() -> np.ndarray:
    """(24, 3, 2) lower/upper limits; the right side mirrors the left (y, z negated)."""
    limits = np.zeros((NUM_SMPL_JOINTS, 3, 2))
    limits[0] = [[-np.pi, np.pi]] * 3  # global orientation is not sampled here
    for j, rng3 in _LEFT_AND_MIDDLE_LIMITS.items():
        limits[j] = rng3
        mirror = FLIP_PERM_SMPL[j]
        if mirror != j:
            limits[mirror, 0] = rng3[0]
            limits[mirror, 1] = (-rng3[1][1], -rng3[1][0])
            limits[mirror, 2] = (-rng3[2][1], -rng3[2][0])
    return limits


JOINT_LIMITS = _joint_limits()

_L_HIP, _R_HIP, _SPINE1, _L_KNEE, _R_KNEE, _SPINE2 = 1, 2, 3, 4, 5, 6
_SPINE3, _NECK, _HEAD = 9, 12, 15
_L_SHOULDER, _R_SHOULDER, _L_ELBOW, _R_ELBOW = 16, 17, 18, 19
ACTIVITIES = ("stand", "walk", "sit", "arms_up", "reach", "bend")
_ACTIVITY_PROBS = np.array([0.25, 0.2, 0.15, 0.15, 0.15, 0.1])


def _fold_into(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect values at the limits (keeps density smooth instead of piling it on the bounds)."""
    width = hi - lo
    y = np.mod(x - lo, 2 * width)
    return lo + np.where(y > width, 2 * width - y, y)


def _activity_means(activity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 24, 3) mean pose per sample for its activity, written for the left side where asymmetric."""
    n = len(activity)
    mean = np.zeros((n, NUM_SMPL_JOINTS, 3))

    def arms_down(mask: np.ndarray, raise_=-1.15, spread=0.2) -> None:
        k = int(mask.sum())
        mean[mask, _L_SHOULDER, 2] = raise_ + spread * rng.standard_normal(k)
        mean[mask, _R_SHOULDER, 2] = -raise_ + spread * rng.standard_normal(k)
        bend = np.abs(0.3 * rng.standard_normal(k)) + 0.1
        mean[mask, _L_ELBOW, 1] = -bend
        mean[mask, _R_ELBOW, 1] = bend

    stand = activity == 0
    arms_down(stand)
    mean[stand, _L_KNEE, 0] = mean[stand, _R_KNEE, 0] = 0.1

    walk = activity == 1
    k = int(walk.sum())
    phase = rng.uniform(-1, 1, k)
    mean[walk, _L_HIP, 0] = -0.45 * phase  # left thigh forward when phase > 0
    mean[walk, _R_HIP, 0] = 0.45 * phase
    mean[walk, _L_KNEE, 0] = 0.25 + 0.5 * np.clip(-phase, 0, None)
    mean[walk, _R_KNEE, 0] = 0.25 + 0.5 * np.clip(phase, 0, None)
    arms_down(walk, -1.25, 0.1)
    # Arms swing opposite to the same-side leg: left arm back (+y) and right arm forward (+y for
    # the mirrored right side) while the left thigh is forward.
    mean[walk, _L_SHOULDER, 1] = 0.4 * phase
    mean[walk, _R_SHOULDER, 1] = 0.4 * phase

    sit = activity == 2
    k = int(sit.sum())
    flex = rng.uniform(1.0, 1.6, k)
    mean[sit, _L_HIP, 0] = mean[sit, _R_HIP, 0] = -flex
    mean[sit, _L_KNEE, 0] = mean[sit, _R_KNEE, 0] = flex + rng.uniform(-0.1, 0.6, k)
    mean[sit, _SPINE1, 0] = 0.15
    arms_down(sit, -0.9, 0.25)
    mean[sit, _L_SHOULDER, 1] = -0.4
    mean[sit, _R_SHOULDER, 1] = 0.4
    mean[sit, _L_ELBOW, 1] = -0.9
    mean[sit, _R_ELBOW, 1] = 0.9

    up = activity == 3
    k = int(up.sum())
    lift = rng.uniform(-0.3, 1.0, k)
    mean[up, _L_SHOULDER, 2] = lift
    mean[up, _R_SHOULDER, 2] = -lift
    bend = rng.uniform(0.0, 1.6, k)
    mean[up, _L_ELBOW, 1] = -bend
    mean[up, _R_ELBOW, 1] = bend

    reach = activity == 4
    k = int(reach.sum())
    arms_down(reach)
    mean[reach, _L_SHOULDER, 1] = -rng.uniform(0.8, 1.5, k)  # the left arm reaches forward
    mean[reach, _L_SHOULDER, 2] = rng.uniform(-0.6, 0.4, k)
    mean[reach, _L_ELBOW, 1] = -rng.uniform(0.0, 1.2, k)
    mean[reach, _SPINE2, 1] = 0.15

    bend_over = activity == 5
    k = int(bend_over.sum())
    amount = rng.uniform(0.3, 1.0, k)
    mean[bend_over, _SPINE1, 0] = 0.5 * amount
    mean[bend_over, _SPINE2, 0] = 0.25 * amount
    mean[bend_over, _SPINE3, 0] = 0.2 * amount
    mean[bend_over, _L_HIP, 0] = mean[bend_over, _R_HIP, 0] = -0.8 * amount
    mean[bend_over, _L_KNEE, 0] = mean[bend_over, _R_KNEE, 0] = 0.3 * amount
    arms_down(bend_over, -1.3, 0.15)
    mean[bend_over, _NECK, 0] = -0.2 * amount
    return mean


def sample_body_pose(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n plausible body poses. Returns (n, 69) float32 axis-angle for SMPL joints 1-23."""
    activity = rng.choice(len(ACTIVITIES), size=n, p=_ACTIVITY_PROBS)
    mean = _activity_means(activity, rng)
    lo, hi = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    # Moderate per-component noise: 8% of the joint's range, so poses stay near their activity.
    noise = 0.08 * (hi - lo) * rng.standard_normal((n, NUM_SMPL_JOINTS, 3))
    pose = _fold_into(mean + noise, lo, hi)
    pose[:, 0] = 0.0
    pose = pose.reshape(n, NUM_SMPL_JOINTS * 3)
    mirror = rng.random(n) < 0.5
    pose[mirror] = pose[mirror][:, FLIP_PERM_POSE] * FLIP_SIGN_POSE
    return pose[:, 3:].astype(np.float32)
