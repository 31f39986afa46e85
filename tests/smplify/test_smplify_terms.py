"""SMPLify's loss terms, priors and config presets (no body model needed)."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fitting_workers.smplify.config import DEFAULT_PRESET, REFERENCE_PRESET, SmplifyConfig
from fitting_workers.smplify.losses import IGNORED_JOINTS, anchor_term, camera_loss, fit_quality, gmof
from fitting_workers.smplify.priors import MaxMixturePrior, angle_prior, load_gmm, shape_prior
from spin.errors import UserError
from spin.joints import JOINT_INDEX, TORSO_GT, TORSO_OPENPOSE


def random_gmm(path, components=3, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 0.2, (components, 69))
    a = rng.normal(0, 0.1, (components, 69, 69))
    covars = a @ a.transpose(0, 2, 1) + 0.01 * np.eye(69)
    weights = rng.uniform(0.5, 1.5, components)
    with open(path, "wb") as handle:
        pickle.dump({"means": means, "covars": covars, "weights": weights / weights.sum()}, handle)
    return means, covars, weights / weights.sum()


def spin_merged_log_likelihood(pose, means, covars, weights):
    """SPIN's MaxMixturePrior.merged_log_likelihood in float64, component by component (the oracle)."""
    sqrdets = np.array([np.sqrt(np.linalg.det(c)) for c in covars])
    const = (2 * np.pi) ** (69 / 2.0)
    nll_weights = weights / (const * (sqrdets / sqrdets.min()))
    out = []
    for p in pose:
        values = [0.5 * (p - m) @ np.linalg.inv(c) @ (p - m) - np.log(w)
                  for m, c, w in zip(means, covars, nll_weights, strict=True)]
        out.append(min(values))
    return np.array(out)


def test_gmm_prior_matches_spin_formula(tmp_path):
    means, covars, weights = random_gmm(tmp_path / "gmm.pkl")
    prior = MaxMixturePrior.from_pickle(tmp_path / "gmm.pkl")
    pose = np.random.default_rng(1).normal(0, 0.3, (5, 69))
    got = prior(torch.tensor(pose, dtype=torch.float32)).double().numpy()
    expected = spin_merged_log_likelihood(pose, means, covars, weights)
    np.testing.assert_allclose(got, expected, rtol=2e-4)


def test_gmm_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_gmm(tmp_path / "missing.pkl")
    with open(tmp_path / "bad.pkl", "wb") as handle:
        pickle.dump({"means": np.zeros((8, 69)), "weights": np.ones(8)}, handle)
    with pytest.raises(UserError, match="bad.pkl.*'covars'"):
        load_gmm(tmp_path / "bad.pkl")
    with open(tmp_path / "shape.pkl", "wb") as handle:
        pickle.dump({"means": np.zeros((8, 63)), "covars": np.zeros((8, 63, 63)), "weights": np.ones(8)},
                    handle)
    with pytest.raises(UserError, match="shape.pkl"):
        load_gmm(tmp_path / "shape.pkl")


def test_angle_and_shape_priors():
    pose = torch.zeros(2, 69)
    pose[1, 52], pose[1, 55], pose[1, 9], pose[1, 12] = 1.0, -1.0, -1.0, -1.0  # all four bent the wrong way
    np.testing.assert_allclose(angle_prior(pose).numpy(), [4.0, 4 * math.e**2], rtol=1e-6)
    np.testing.assert_allclose(shape_prior(torch.tensor([[1.0, 2.0], [0.0, 3.0]])).numpy(), [5.0, 9.0])


def test_gmof_is_quadratic_near_zero_and_bounded():
    x = torch.tensor([0.0, 1e-2, 1e4])
    got = gmof(x, 100.0)
    np.testing.assert_allclose(got[:2].numpy(), (x[:2] ** 2).numpy(), rtol=1e-6)
    assert got[2] < 100.0**2


def _identity_scene(batch=2):
    """Joints on a plane at depth 0 with cam_t z = 50: pixel = 100·(x, y) + 112."""
    joints = torch.zeros(batch, 49, 3)
    joints[..., :2] = torch.linspace(-0.5, 0.5, 49)[None, :, None]
    cam_t = torch.tensor([[0.0, 0.0, 50.0]]).repeat(batch, 1)
    keypoints = torch.ones(batch, 49, 3)
    keypoints[..., :2] = 100.0 * joints[..., :2] + 112.0
    return joints, cam_t, keypoints


def test_fit_quality_by_hand():
    joints, cam_t, keypoints = _identity_scene()
    assert torch.allclose(fit_quality(joints, cam_t, keypoints), torch.zeros(2), atol=1e-3)
    keypoints[1, 0, 0] += 10.0  # OP Nose off by 10 px with confidence 0.5
    keypoints[1, 0, 2] = 0.5
    expected = 0.25 * (1e4 * 100.0 / (1e4 + 100.0)) / 49
    np.testing.assert_allclose(fit_quality(joints, cam_t, keypoints)[1].item(), expected, rtol=1e-3)


def test_fit_quality_ignores_spins_ignored_joints():
    joints, cam_t, keypoints = _identity_scene()
    names = ("OP Neck", "OP RHip", "OP LHip", "Right Hip", "Left Hip")
    assert {JOINT_INDEX[n] for n in names} == set(IGNORED_JOINTS)
    before = fit_quality(joints, cam_t, keypoints)
    keypoints[:, list(IGNORED_JOINTS), :2] += 50.0
    assert torch.allclose(fit_quality(joints, cam_t, keypoints), before)


def test_camera_loss_prefers_openpose_torso_when_all_four_are_confident():
    joints, cam_t, keypoints = _identity_scene()
    keypoints[:, list(TORSO_GT), 0] += 3.0  # GT torso off by 3 px each; OpenPose exact
    loss = camera_loss(joints, cam_t, cam_t, keypoints, 5000.0, 224, depth_weight=100.0)
    assert torch.allclose(loss, torch.zeros(2), atol=1e-2)
    keypoints[1, TORSO_OPENPOSE[0], 2] = 0.0  # one OpenPose torso joint missing -> GT joints used
    loss = camera_loss(joints, cam_t, cam_t + torch.tensor([0.0, 0.0, 0.01]), keypoints, 5000.0, 224, 100.0)
    np.testing.assert_allclose(loss.numpy(), [1.0, 4 * 9.0 + 1.0], rtol=1e-3)


def test_config_presets_and_overrides():
    assert SmplifyConfig(mode="reference").resolved() == REFERENCE_PRESET
    assert REFERENCE_PRESET.optimizer == "adam" and REFERENCE_PRESET.lr == 1e-2
    assert REFERENCE_PRESET.iters_camera == REFERENCE_PRESET.iters_body == 100
    assert SmplifyConfig().resolved() == DEFAULT_PRESET
    custom = SmplifyConfig(mode="reference", optimizer="lbfgs", iters_body=7).resolved()
    assert (custom.optimizer, custom.lr, custom.iters_camera, custom.iters_body) == ("lbfgs", 1.0, 100, 7)
    with pytest.raises(ValueError, match="mode"):
        SmplifyConfig(mode="fast").resolved()
    with pytest.raises(ValueError, match="optimizer"):
        SmplifyConfig(optimizer="sgd").resolved()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), conf_scale=st.floats(0.0, 3.0))
def test_fit_quality_is_bounded_and_scales_with_confidence_squared(seed, conf_scale):
    generator = torch.Generator().manual_seed(seed)
    joints = torch.randn(3, 49, 3, generator=generator) * 0.5
    cam_t = torch.tensor([[0.0, 0.0, 40.0]]).repeat(3, 1)
    keypoints = torch.rand(3, 49, 3, generator=generator) * torch.tensor([224.0, 224.0, 1.0])
    loss = fit_quality(joints, cam_t, keypoints)
    assert (loss >= 0).all()
    # GMoF saturates at σ² per coordinate: at most 2σ²·conf² per joint
    assert (loss <= 2 * 100.0**2 * (keypoints[..., 2] ** 2).mean(dim=-1) + 1e-3).all()
    scaled = keypoints.clone()
    scaled[..., 2] *= conf_scale
    torch.testing.assert_close(fit_quality(joints, cam_t, scaled), conf_scale**2 * loss, rtol=1e-4, atol=1e-3)


def test_robust_anchor_is_quadratic_near_the_init_and_bounded_far_away():
    init_pose, init_betas = torch.zeros(3, 69), torch.zeros(3, 10)
    pose = torch.zeros(3, 69)
    pose[1, 0] = 0.01
    pose[2, 0] = 100.0
    got = anchor_term(pose, init_betas, init_pose, init_betas, sigma=0.3)
    np.testing.assert_allclose(got[:2].numpy(), [0.0, 1e-4], rtol=2e-3, atol=1e-9)
    assert 0.3**2 * 0.99 < got[2] <= 0.3**2  # one far-off number costs at most sigma²
    squared = anchor_term(pose, init_betas, init_pose, init_betas)
    np.testing.assert_allclose(squared[2].item(), 1e4, rtol=1e-6)


def test_reference_mode_has_no_anchor_and_no_polish():
    settings = SmplifyConfig(mode="reference").resolved()
    assert settings.anchor_weight == 0 and settings.polish_iters == 0 and settings.polish_prior_scale == 1
    assert settings.final_lr_fraction == 1
    with pytest.raises(ValueError, match="anchor_weight"):
        SmplifyConfig(anchor_weight=-1.0).resolved()
