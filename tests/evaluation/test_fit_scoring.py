"""fitting_workers.scoring.score_fits: static fits scored as SPIN does, equal to SMPLify's own
objective for the same parameters, with SMPLify's failure rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitting_workers.scoring import score_fits
from fitting_workers.smplify import FAILED_LOSS, FAILURE_REASONS, SMPLify, SmplifyConfig
from fitting_workers.smplify.losses import project_joints
from spin.body import resolve_body_files
from spin.body.pose_sampler import sample_body_pose


@pytest.fixture(scope="module")
def problem(body):
    rng = np.random.default_rng(3)
    n = 8
    pose = sample_body_pose(n, rng).astype(np.float32)
    pose = np.concatenate([np.tile([[np.pi, 0, 0]], (n, 1)).astype(np.float32), pose], axis=1)
    betas = (0.5 * rng.standard_normal((n, 10))).astype(np.float32)
    cam_t = np.stack([rng.uniform(-0.2, 0.2, n), rng.uniform(-0.2, 0.2, n), rng.uniform(25, 40, n)], 1)
    joints = body.joints(torch.as_tensor(pose), torch.as_tensor(betas))
    kp2d = project_joints(joints, torch.as_tensor(cam_t, dtype=torch.float32), 5000.0, 224).numpy()
    keypoints = np.concatenate([kp2d, np.ones((n, 49, 1), np.float32)], axis=2)
    return pose, betas, cam_t.astype(np.float32), keypoints


def test_scored_loss_equals_smplifys_objective(body, problem):
    pose, betas, _, keypoints = problem
    noisy = keypoints.copy()
    noisy[..., :2] += np.random.default_rng(0).normal(0, 6, noisy[..., :2].shape)
    loss, cam_t, failure = score_fits(body, pose, betas, noisy)
    assert np.all(failure == 0) and loss.shape == (8,) and cam_t.shape == (8, 3)
    reference = SMPLify(body, resolve_body_files().prior, SmplifyConfig()).quality(pose, betas, cam_t, noisy)
    np.testing.assert_allclose(loss, reference, rtol=1e-6)
    assert np.all(loss > 1.0)  # pixel noise costs something


def test_exact_keypoints_recover_the_camera_and_score_zero(body, problem):
    pose, betas, cam_true, keypoints = problem
    loss, cam_t, failure = score_fits(body, pose, betas, keypoints)
    np.testing.assert_allclose(cam_t, cam_true, rtol=2e-3, atol=2e-3)
    assert np.all(failure == 0) and np.all(loss < 1e-2)
    # Another sample's parameters fit these keypoints much worse.
    shuffled, _, _ = score_fits(body, np.roll(pose, 1, 0), np.roll(betas, 1, 0), keypoints)
    assert np.all(shuffled > 10 * loss + 1.0)


def test_failure_rules_match_smplify(body, problem):
    pose, betas, _, keypoints = problem
    kp = keypoints.copy()
    kp[0, :, 2] = 0.0  # no confident keypoint: never a perfect loss of 0
    kp[1, 6:, 2] = 0.0  # 6 confident minus SPIN's ignored ones: below min_keypoints
    pose = pose.copy()
    pose[2, 5] = np.nan
    loss, cam_t, failure = score_fits(body, pose, betas, kp)
    reasons = [FAILURE_REASONS[f] for f in failure[:3]]
    assert reasons == ["too_few_keypoints", "too_few_keypoints", "nonfinite_input"]
    assert np.all(loss[:3] == FAILED_LOSS) and np.all(np.isfinite(cam_t)) and np.all(failure[3:] == 0)
    empty = score_fits(body, pose[:0], betas[:0], kp[:0])
    assert [a.shape for a in empty] == [(0,), (0, 3), (0,)]
