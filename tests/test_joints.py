"""spin.joints: SPIN's 49-joint table, flip permutations by name, and flip functions."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from spin.joints import (
    EXTRA_JOINT_NAMES,
    FLIP_PERM_GT,
    FLIP_PERM_KEYPOINTS,
    FLIP_PERM_SMPL,
    GT_IGNORED,
    JOINT_NAMES,
    LSP14_FROM_GT,
    MODEL_JOINT_INDEX,
    OPENPOSE_IGNORED,
    SMPL_JOINT_NAMES,
    TORSO_GT,
    TORSO_OPENPOSE,
    VERTEX_JOINT_NAMES,
    flip_keypoints,
    flip_pose,
)


def _swap_sides(name: str) -> str:
    for a, b in (
        ("OP R", "OP @"),
        ("OP L", "OP R"),
        ("OP @", "OP L"),
        ("Right", "@"),
        ("Left", "Right"),
        ("@", "Left"),
        ("right", "@"),
        ("left", "right"),
        ("@", "left"),
    ):
        name = name.replace(a, b)
    return name


def test_table_sizes_and_spot_checks():
    assert len(JOINT_NAMES) == 49 == len(set(JOINT_NAMES)) == len(MODEL_JOINT_INDEX)
    assert MODEL_JOINT_INDEX.min() == 0 and MODEL_JOINT_INDEX.max() == 53
    model_names = list(SMPL_JOINT_NAMES) + list(VERTEX_JOINT_NAMES) + list(EXTRA_JOINT_NAMES)
    named = {JOINT_NAMES[i]: model_names[m] for i, m in enumerate(MODEL_JOINT_INDEX)}
    assert named["OP Nose"] == named["Nose"] == "nose"
    assert named["OP RShoulder"] == named["Right Shoulder"] == "right_shoulder"
    assert named["OP MidHip"] == "pelvis" and named["OP LHip"] == "left_hip"
    assert named["OP LBigToe"] == "LBigToe" and named["OP RHeel"] == "RHeel"
    assert named["OP REye"] == named["Right Eye"] == "reye"
    for name in EXTRA_JOINT_NAMES:  # the 9 extra rows feed the GT joints of the same name
        assert named[name] == name


def test_flip_permutations_swap_left_and_right_by_name():
    for perm, names in ((FLIP_PERM_KEYPOINTS, JOINT_NAMES), (FLIP_PERM_SMPL, SMPL_JOINT_NAMES)):
        np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
        for i, j in enumerate(perm):
            assert names[j] == _swap_sides(names[i]), (names[i], names[j])
    gt = JOINT_NAMES[25:]
    for i, j in enumerate(FLIP_PERM_GT):
        assert gt[j] == _swap_sides(gt[i])


def test_index_groups():
    assert [JOINT_NAMES[i] for i in OPENPOSE_IGNORED] == ["OP Neck", "OP RHip", "OP LHip"]
    assert list(GT_IGNORED) == [27, 28]
    assert [JOINT_NAMES[i] for i in TORSO_OPENPOSE] == ["OP RHip", "OP LHip", "OP RShoulder", "OP LShoulder"]
    assert [JOINT_NAMES[i] for i in TORSO_GT] == ["Right Hip", "Left Hip", "Right Shoulder", "Left Shoulder"]
    # SPIN's 14 evaluation joints: 12 limb joints, the LSP neck, and the H36M head
    assert [JOINT_NAMES[25 + i] for i in LSP14_FROM_GT][-2:] == ["Neck (LSP)", "Head (H36M)"]


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (5, 72), elements=st.floats(-3, 3, width=32)))
def test_flip_pose_twice_is_identity(pose):
    np.testing.assert_array_equal(flip_pose(flip_pose(pose)), pose)
    t = torch.as_tensor(pose)
    torch.testing.assert_close(flip_pose(flip_pose(t)), t)
    torch.testing.assert_close(flip_pose(t), torch.as_tensor(flip_pose(pose)))
    flipped = flip_pose(pose).reshape(5, 24, 3)
    original = pose.reshape(5, 24, 3)
    np.testing.assert_array_equal(flipped[:, 1], original[:, 2] * [1, -1, -1])  # left hip <- right hip


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (3, 49, 3), elements=st.floats(0, 224)))
def test_flip_keypoints_twice_is_identity_and_mirrors(kp):
    once = flip_keypoints(kp, 224)
    np.testing.assert_allclose(flip_keypoints(once, 224), kp, atol=1e-9)
    np.testing.assert_allclose(once[:, 2, 0], 224 - kp[:, 5, 0])  # OP RShoulder <- mirrored OP LShoulder
    np.testing.assert_array_equal(once[..., 1:], kp[:, FLIP_PERM_KEYPOINTS, 1:])
    t = torch.as_tensor(kp)
    torch.testing.assert_close(flip_keypoints(t, 224), torch.as_tensor(once))
    assert flip_keypoints(kp[0], 224).shape == (49, 3)
