"""SPIN's 49-joint set: names, the map from model joints, flip permutations and index groups.

The 49 keypoints are the 25 OpenPose BODY_25 joints (indices 0-24) followed by a 24-joint
ground-truth superset (25-48). Each is read from one of the body model's 54 joints: 0-23 SMPL's
joints, 24-44 smplx's vertex joints (nose, right eye, left eye, right ear, left ear, left big toe,
left small toe, left heel, right big toe, right small toe, right heel, then ten fingertips), and
45-53 the nine rows of SPIN's ``J_regressor_extra`` (right hip, left hip, neck (LSP), top of head
(LSP), pelvis (MPII), thorax (MPII), spine (H36M), jaw (H36M), head (H36M)).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

NUM_KEYPOINTS = 49
NUM_OPENPOSE = 25
NUM_GT = 24
NUM_SMPL_JOINTS = 24
NUM_VERTEX_JOINTS = 21
NUM_EXTRA_JOINTS = 9
NUM_MODEL_JOINTS = NUM_SMPL_JOINTS + NUM_VERTEX_JOINTS + NUM_EXTRA_JOINTS  # 54

# fmt: off
SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)
# smplx's vertex joints for SMPL, in the order smplx appends them (model joints 24-44).
VERTEX_JOINT_NAMES: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky",
    "rthumb", "rindex", "rmiddle", "rring", "rpinky",
)
# SPIN's J_regressor_extra rows (model joints 45-53).
EXTRA_JOINT_NAMES: tuple[str, ...] = (
    "Right Hip", "Left Hip", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)",
    "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)",
)

JOINT_NAMES: tuple[str, ...] = (
    # 25 OpenPose joints
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder",
    "OP LElbow", "OP LWrist", "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip",
    "OP LKnee", "OP LAnkle", "OP REye", "OP LEye", "OP REar", "OP LEar", "OP LBigToe",
    "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
    # 24 ground-truth joints
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle",
    "Right Wrist", "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist",
    "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)",
    "Jaw (H36M)", "Head (H36M)", "Nose", "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

MODEL_JOINT_INDEX = np.array(
    [24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
     8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27],
    dtype=np.int64,
)

FLIP_PERM_SMPL = np.array(
    [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22], dtype=np.int64
)
FLIP_PERM_GT = np.array(
    [5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22], dtype=np.int64
)
_FLIP_PERM_OPENPOSE = np.array(
    [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21], dtype=np.int64
)
# fmt: on
FLIP_PERM_KEYPOINTS = np.concatenate([_FLIP_PERM_OPENPOSE, NUM_OPENPOSE + FLIP_PERM_GT])
# Per pose number (72,): which number a flipped pose reads, and the sign it gets (SPIN negates the
# 2nd and 3rd axis-angle components of every joint after permuting).
FLIP_PERM_POSE = (3 * FLIP_PERM_SMPL[:, None] + np.arange(3)[None, :]).reshape(-1)
FLIP_SIGN_POSE = np.tile(np.array([1.0, -1.0, -1.0], dtype=np.float32), NUM_SMPL_JOINTS)

# Evaluation: 14 LSP-order joints taken from the 24 GT joints, or from H36M's 17 regressed joints.
LSP14_FROM_GT = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18], dtype=np.int64)
LSP14_FROM_H36M17 = np.array([6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10], dtype=np.int64)

# SMPLify's body stage ignores these (their definitions differ between datasets and SMPL).
OPENPOSE_IGNORED = np.array([JOINT_INDEX[n] for n in ("OP Neck", "OP RHip", "OP LHip")], dtype=np.int64)
GT_IGNORED = np.array([JOINT_INDEX[n] for n in ("Right Hip", "Left Hip")], dtype=np.int64)
# SMPLify's camera stage fits these four torso joints (RHip, LHip, RShoulder, LShoulder).
TORSO_OPENPOSE = np.array(
    [JOINT_INDEX[n] for n in ("OP RHip", "OP LHip", "OP RShoulder", "OP LShoulder")], dtype=np.int64
)
TORSO_GT = np.array(
    [JOINT_INDEX[n] for n in ("Right Hip", "Left Hip", "Right Shoulder", "Left Shoulder")], dtype=np.int64
)


def flip_pose(pose: ArrayLike) -> ArrayLike:
    """Mirror SMPL pose parameters left-right (SPIN's ``flip_pose``).

    pose: (..., 72) axis-angle, numpy or torch. Returns a new array of the same type and shape:
    joints swapped with FLIP_PERM_SMPL, 2nd and 3rd axis-angle components negated.
    """
    if pose.shape[-1] != 3 * NUM_SMPL_JOINTS:
        raise ValueError(f"flip_pose expects (..., 72) axis-angle poses, got shape {tuple(pose.shape)}")
    if isinstance(pose, torch.Tensor):
        perm = torch.as_tensor(FLIP_PERM_POSE, device=pose.device)
        sign = torch.as_tensor(FLIP_SIGN_POSE, device=pose.device, dtype=pose.dtype)
        return pose[..., perm] * sign
    return pose[..., FLIP_PERM_POSE] * FLIP_SIGN_POSE.astype(pose.dtype, copy=False)


def flip_keypoints(keypoints: ArrayLike, img_res: float) -> ArrayLike:
    """Mirror 49 keypoints in an image of side ``img_res`` pixels.

    keypoints: (..., 49, 3) pixel x, y, confidence (numpy or torch). Joints are swapped with
    FLIP_PERM_KEYPOINTS and x maps to ``img_res - x`` (continuous pixel coordinates).
    """
    if keypoints.shape[-2:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"flip_keypoints expects (..., 49, 3) keypoints, got shape {tuple(keypoints.shape)}")
    if isinstance(keypoints, torch.Tensor):
        out = keypoints[..., torch.as_tensor(FLIP_PERM_KEYPOINTS, device=keypoints.device), :].clone()
    else:
        out = keypoints[..., FLIP_PERM_KEYPOINTS, :].copy()
    out[..., 0] = img_res - out[..., 0]
    return out
