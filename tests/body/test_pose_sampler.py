"""The joint-limit pose sampler: within limits, deterministic, varied, left-right symmetric."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.body.pose_sampler import JOINT_LIMITS, sample_body_pose
from spin.joints import flip_pose


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_within_limits_and_deterministic(seed):
    pose = sample_body_pose(200, np.random.default_rng(seed))
    assert pose.shape == (200, 69) and pose.dtype == np.float32
    limits = JOINT_LIMITS[1:].reshape(69, 2)
    assert np.all(pose >= limits[:, 0] - 1e-6) and np.all(pose <= limits[:, 1] + 1e-6)
    np.testing.assert_array_equal(pose, sample_body_pose(200, np.random.default_rng(seed)))


def test_plausible_and_symmetric():
    pose = sample_body_pose(8000, np.random.default_rng(0))
    full = np.concatenate([np.zeros((len(pose), 3), np.float32), pose], axis=1)
    assert np.all(full[:, 3 * 4] >= 0) and np.all(full[:, 3 * 5] >= 0)  # knees bend one way
    assert np.all(full[:, 3 * 18 + 1] <= 0) and np.all(full[:, 3 * 19 + 1] >= 0)  # elbows too
    assert np.all(pose.std(0) > 0.01)  # every component varies (the GMM needs it)
    assert np.abs(full[:, 9:12]).max() <= 0.6  # spine stays moderate
    # arms are mostly lowered (not a T-pose) and knees often bent (walking, sitting)
    assert np.median(full[:, 3 * 16 + 2]) < -0.5 and np.mean(full[:, 3 * 4] > 0.5) > 0.15
    # the distribution is its own mirror image (flip augmentation relies on it)
    np.testing.assert_allclose(flip_pose(full).mean(0), full.mean(0), atol=0.03)
