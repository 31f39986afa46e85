"""NBF's mean joint-rotation error and per-sample PCKh on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.evaluation.nbf_metrics import joint_rotation_errors, mean_joint_rotation_error, pckh
from spin.geometry import axis_angle_to_matrix, matrix_to_quaternion


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_rotation_error_of_hand_made_rotations():
    gt = np.tile(np.eye(3), (2, 4, 1, 1))
    pred = gt.copy()
    pred[0, 1] = rot_z(0.3)
    pred[1, 2] = rot_z(3.0)  # near the half-turn, where acos of the matrix trace degrades
    pred[1, 3] = rot_z(-0.2)
    errors = joint_rotation_errors(pred, gt).numpy()
    np.testing.assert_allclose(errors, [[0, 0.3, 0, 0], [0, 0, 3.0, 0.2]], atol=1e-9)
    np.testing.assert_allclose(mean_joint_rotation_error(pred, gt), [0.3 / 4, 3.2 / 4], atol=1e-9)
    np.testing.assert_allclose(mean_joint_rotation_error(pred, gt, joints=[1]), [0.3, 0.0], atol=1e-9)
    assert mean_joint_rotation_error(gt, gt).max() == 0.0


def test_axis_angle_and_matrices_give_the_same_error():
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(3, 72, generator=g, dtype=torch.float64) for _ in range(2))
    by_aa = mean_joint_rotation_error(a, b)
    by_mat = mean_joint_rotation_error(axis_angle_to_matrix(a.reshape(3, 24, 3)),
                                       axis_angle_to_matrix(b.reshape(3, 24, 3)))
    np.testing.assert_allclose(by_aa, by_mat, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-3.0, 3.0), min_size=6, max_size=6))
def test_matches_the_quaternion_distance_formula(values):
    aa = torch.tensor(values, dtype=torch.float64).reshape(2, 1, 3)
    r = axis_angle_to_matrix(aa)
    q1, q2 = matrix_to_quaternion(r[0]), matrix_to_quaternion(r[1])
    formula = 2.0 * torch.acos((q1 * q2).sum(-1).abs().clamp(max=1.0))
    ours = joint_rotation_errors(r[:1], r[1:])[0]
    assert torch.allclose(ours, formula, atol=1e-6)
    assert 0.0 <= float(ours) <= np.pi + 1e-9
    # symmetric
    assert torch.allclose(ours, joint_rotation_errors(r[1:], r[:1])[0], atol=1e-9)


def lsp_skeleton() -> np.ndarray:
    """14 LSP joints (14,3), visible, neck at (50, 40), head top at (50, 30): head size 10 px."""
    joints = np.zeros((14, 3))
    joints[:, 0] = np.arange(14) * 7.0
    joints[:, 1] = 100.0
    joints[12, :2] = (50.0, 40.0)
    joints[13, :2] = (50.0, 30.0)
    joints[:, 2] = 1.0
    return joints


def test_pckh_counts_joints_within_half_the_head_size():
    gt = lsp_skeleton()[None]
    pred = gt[..., :2].copy()
    pred[0, 0] += (4.0, 0.0)  # within 5 px: correct
    pred[0, 1] += (3.0, 4.0)  # exactly 5 px: correct (within, inclusive)
    pred[0, 2] += (0.0, 5.1)  # beyond: wrong
    pred[0, 3] += (-6.0, 0.0)  # wrong
    assert pckh(pred, gt)[0] == pytest.approx(12 / 14)
    assert pckh(pred, gt, fraction=1.0)[0] == pytest.approx(14 / 14)


def test_pckh_ignores_hidden_joints_and_is_nan_without_a_head():
    gt = np.stack([lsp_skeleton(), lsp_skeleton()])
    pred = gt[..., :2].copy()
    pred[:, 0] += 50.0  # wrong in both samples
    gt[0, 0, 2] = 0.0  # ... but hidden in the first
    gt[1, 13, 2] = 0.0  # the second has no head top
    scores = pckh(pred, gt)
    assert scores[0] == 1.0 and np.isnan(scores[1])
    assert np.isnan(pckh(pred[:1], np.where(np.arange(3) == 2, 0.0, gt[:1]))[0])  # nothing visible


def test_implausible_bodies_flags_shapes_and_joints_beyond_the_samplers_range():
    from spin.body.pose_sampler import JOINT_LIMITS, sample_body_pose
    from spin.evaluation.nbf_metrics import implausible_bodies

    n = 200
    pose = np.concatenate([np.zeros((n, 3)), sample_body_pose(n, np.random.default_rng(1))], axis=1)
    betas = np.random.default_rng(2).uniform(-2.5, 2.5, (n, 10))
    assert not implausible_bodies(pose, betas).any()  # the sampler's own bodies are plausible
    bent = pose.copy().reshape(n, 24, 3)
    bent[0, 18, 1] = JOINT_LIMITS[18, 1, 1] + 0.5  # left elbow folded backwards
    wide = betas.copy()
    wide[1, 0] = 3.5
    flags = implausible_bodies(bent.reshape(n, 72), wide)
    assert flags[0] and flags[1] and not flags[2:].any()
    turned = pose.copy()
    turned[:, :3] = 3.0  # the global orientation is not judged
    assert not implausible_bodies(turned, betas).any()


def test_limit_excess_is_zero_inside_the_range_and_grows_with_the_distance_beyond_it():
    from spin.body.pose_sampler import JOINT_LIMITS, sample_body_pose
    from spin.evaluation.nbf_metrics import (
        body_plausibility,
        implausible_bodies,
        joint_limit_excess,
        limit_excess_per_body,
    )

    n = 50
    pose = np.concatenate([np.zeros((n, 3)), sample_body_pose(n, np.random.default_rng(3))], axis=1)
    assert joint_limit_excess(pose).shape == (n, 23, 3)
    assert np.all(limit_excess_per_body(pose) == 0.0)
    out = pose.reshape(n, 24, 3).copy()
    steps = np.linspace(0.0, 1.0, n)
    out[:, 4, 0] = JOINT_LIMITS[4, 0, 0] - steps  # left knee bent backwards by 0 … 1 rad
    out[:, 7, 2] = JOINT_LIMITS[7, 2, 1] + 2 * steps  # and the ankle twisted beyond its top
    out[:, 0] = 2.5  # the global orientation is not judged
    excess = limit_excess_per_body(out.reshape(n, 72))
    np.testing.assert_allclose(excess, 3 * steps, atol=1e-9)
    assert np.all(np.diff(excess) > 0)
    assert np.array_equal(implausible_bodies(out.reshape(n, 72), np.zeros((n, 10))), 3 * steps > 1e-3)
    flags, summed = body_plausibility(out.reshape(n, 72), np.zeros((n, 10)))  # evaluation's one pass
    assert np.array_equal(flags, 3 * steps > 1e-3) and np.array_equal(summed, excess)
