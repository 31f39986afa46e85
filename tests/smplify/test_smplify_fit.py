"""Batched SMPLify on synthetic people with known parameters (the synthetic body model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitting_workers.smplify import FAILED_LOSS, SMPLify, SmplifyConfig
from fitting_workers.smplify.synthetic import make_problems
from spin.evaluation.metrics import mpjpe
from spin.joints import LSP14_FROM_GT, NUM_OPENPOSE


def lsp14(body, pose, betas):
    with torch.no_grad():
        joints = body.joints(torch.as_tensor(pose), torch.as_tensor(betas))
    return joints[:, NUM_OPENPOSE + torch.as_tensor(LSP14_FROM_GT)]


def joint_error_mm(body, problems, pose, betas):
    return mpjpe(lsp14(body, pose, betas), lsp14(body, problems.gt_pose, problems.gt_betas))


@pytest.fixture(scope="module")
def problems(body):
    return make_problems(body, 12, seed=3)


@pytest.fixture(scope="module")
def default_fit(body, body_files, problems):
    smplify = SMPLify(body, body_files.prior, SmplifyConfig())
    result = smplify.fit(problems.keypoints, problems.init_pose, problems.init_betas, problems.init_cam_t)
    return smplify, result


def test_default_mode_beats_the_initialisation(body, problems, default_fit):
    smplify, result = default_fit
    assert not result.failed.any()
    init_loss = smplify.quality(problems.init_pose, problems.init_betas, problems.init_cam_t,
                                problems.keypoints)
    assert result.loss.mean() < 0.2 * init_loss.mean()
    assert (result.loss < init_loss).mean() >= 0.9
    init_error = joint_error_mm(body, problems, problems.init_pose, problems.init_betas)
    fit_error = joint_error_mm(body, problems, result.pose, result.betas)
    assert fit_error.mean() < init_error.mean()
    # the reported loss is the stored fit quality of the returned parameters
    np.testing.assert_allclose(result.loss, smplify.quality(result.pose, result.betas, result.cam_t,
                                                            problems.keypoints), rtol=1e-4, atol=1e-3)
    assert result.pose.dtype == np.float32 and result.pose.shape == (12, 72) and result.cam_t.shape == (12, 3)


def test_reference_mode_beats_the_initialisation(body, body_files, problems):
    part = problems.slice(slice(0, 4))
    smplify = SMPLify(body, body_files.prior, SmplifyConfig(mode="reference", iters_camera=10, iters_body=25))
    result = smplify.fit(part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    init_loss = smplify.quality(part.init_pose, part.init_betas, part.init_cam_t, part.keypoints)
    assert not result.failed.any()
    assert (result.loss < init_loss).all()


def test_modes_agree_on_the_loss_definition(body, body_files, problems, default_fit):
    _, result = default_fit
    reference = SMPLify(body, body_files.prior, SmplifyConfig(mode="reference"))
    default = SMPLify(body, body_files.prior, SmplifyConfig(mode="default"))
    for pose, betas, cam_t in ((result.pose, result.betas, result.cam_t),
                               (problems.init_pose, problems.init_betas, problems.init_cam_t)):
        np.testing.assert_allclose(reference.quality(pose, betas, cam_t, problems.keypoints),
                                   default.quality(pose, betas, cam_t, problems.keypoints),
                                   rtol=1e-3, atol=1e-3)


def test_mean_pose_start_converges_on_easy_poses(body, body_files):
    from fitting_workers.dataset_fit import mean_initialisation

    easy = make_problems(body, 8, seed=5, pose_scale=0.3, missing_fraction=0.0)
    start = mean_initialisation(body_files, len(easy))
    smplify = SMPLify(body, body_files.prior, SmplifyConfig())
    result = smplify.fit(easy.keypoints, start.pose, start.betas, None)  # camera from least squares
    init_error = joint_error_mm(body, easy, start.pose, start.betas)
    fit_error = joint_error_mm(body, easy, result.pose, result.betas)
    assert not result.failed.any()
    assert np.median(result.loss) < 10.0  # 1 px keypoint noise gives about 2 at the truth
    assert fit_error.mean() < 0.6 * init_error.mean()


@pytest.mark.parametrize("mode", ["default", "reference"])
def test_bad_samples_are_flagged_and_do_not_touch_the_others(body, body_files, problems, mode):
    part = problems.slice(slice(0, 5))
    keypoints, pose, betas, cam_t = (a.copy() for a in (part.keypoints, part.init_pose, part.init_betas,
                                                        part.init_cam_t))
    keypoints[1, 3, 0] = np.nan
    pose[2, 10] = np.inf
    cam_t[3, 2] = np.nan
    betas[4, 0] = -np.inf
    config = SmplifyConfig(mode=mode, iters_camera=5, iters_body=5)
    smplify = SMPLify(body, body_files.prior, config)
    result = smplify.fit(keypoints, pose, betas, cam_t)
    assert result.failed.tolist() == [False, True, True, True, True]
    assert result.failure_counts() == {"nonfinite_input": 4}
    for array in (result.pose, result.betas, result.cam_t, result.loss):
        assert np.isfinite(array).all()
    assert (result.loss[1:] == np.float32(FAILED_LOSS)).all()
    np.testing.assert_array_equal(result.pose[1], part.init_pose[1])  # failed samples return the init
    # The good sample fits as in the clean batch of the same size (same kernels, so no float noise
    # that an ill-conditioned sample's LM camera stage could amplify across batch sizes).
    clean = smplify.fit(part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    np.testing.assert_allclose(result.pose[0], clean.pose[0], atol=1e-5)
    np.testing.assert_allclose(result.loss[0], clean.loss[0], rtol=1e-5)


def test_camera_behind_the_image_plane_is_a_failed_sample(body, body_files, problems):
    part = problems.slice(slice(0, 2))
    cam_t = part.init_cam_t.copy()
    cam_t[0, 2] = -5.0
    result = SMPLify(body, body_files.prior, SmplifyConfig(iters_camera=2, iters_body=2)).fit(
        part.keypoints, part.init_pose, part.init_betas, cam_t)
    assert result.failed.tolist() == [True, False]
    assert result.failure_counts() == {"camera_behind": 1}


@pytest.mark.parametrize("confident", [0, 3, 5])
def test_too_few_confident_keypoints_is_a_failed_fit_not_a_perfect_one(body, body_files, problems, confident):
    """All-zero confidence would score loss 0; any sample under `min_keypoints` is a failure instead."""
    part = problems.slice(slice(0, 2))
    keypoints = part.keypoints.copy()
    usable = np.flatnonzero(keypoints[0, :, 2] > 0)
    usable = usable[~np.isin(usable, [1, 9, 12, 27, 28])]  # SPIN's ignored joints never count
    keypoints[0, usable[confident:], 2] = 0.0
    result = SMPLify(body, body_files.prior, SmplifyConfig(iters_camera=2, iters_body=2)).fit(
        keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    assert result.failed.tolist() == [True, False]
    assert result.failure_counts() == {"too_few_keypoints": 1}
    assert result.loss[0] == np.float32(FAILED_LOSS)


def test_anchor_keeps_the_fit_near_the_initialisation(body, body_files, problems):
    part = problems.slice(slice(0, 4))
    args = (part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    free = SMPLify(body, body_files.prior, SmplifyConfig(iters_body=15, anchor_weight=0.0)).fit(*args)
    anchored = SMPLify(body, body_files.prior, SmplifyConfig(iters_body=15, anchor_weight=1e5,
                                                              anchor_sigma=0.0)).fit(*args)

    def distance(result):
        pose_change = np.abs(result.pose[:, 3:] - part.init_pose[:, 3:]).sum()
        return pose_change + np.abs(result.betas - part.init_betas).sum()

    assert distance(anchored) < 0.5 * distance(free)


def test_adam_in_default_mode_and_empty_batches(body, body_files, problems):
    part = problems.slice(slice(0, 3))
    smplify = SMPLify(body, body_files.prior, SmplifyConfig(optimizer="adam", lr=0.02, iters_camera=10,
                                                             iters_body=20))
    result = smplify.fit(part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    init_loss = smplify.quality(part.init_pose, part.init_betas, part.init_cam_t, part.keypoints)
    assert (result.loss < init_loss).all()
    empty = smplify.fit(np.zeros((0, 49, 3)), np.zeros((0, 72)), np.zeros((0, 10)))
    assert len(empty) == 0 and empty.pose.shape == (0, 72)
    with pytest.raises(ValueError, match="keypoints"):
        smplify.fit(np.zeros((2, 24, 3)), np.zeros((2, 72)), np.zeros((2, 10)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(body_files, problems):
    from spin.body import BodyModel

    part = problems.slice(slice(0, 4))
    args = (part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    cpu = SMPLify(BodyModel.from_files(body_files), body_files.prior, SmplifyConfig()).fit(*args)
    gpu = SMPLify(BodyModel.from_files(body_files), body_files.prior, SmplifyConfig(),
                  device="cuda").fit(*args)
    assert not gpu.failed.any()
    np.testing.assert_array_equal(gpu.failure, cpu.failure)
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=0.05, atol=0.1)
    np.testing.assert_allclose(gpu.pose, cpu.pose, atol=0.02)
    np.testing.assert_allclose(gpu.cam_t, cpu.cam_t, rtol=1e-3, atol=1e-3)


def test_default_fits_reach_the_noise_floor(body, body_files):
    """From a close (good network's) start, keypoints with 1 px noise and none missing, the fit's loss
    comes down to the level of the truth's (the noise floor) and its 3D error below the start's."""
    people = make_problems(body, 8, seed=21, missing_fraction=0.0, keypoint_noise_px=1.0, pose_noise=0.05,
                           betas_noise=0.15)
    smplify = SMPLify(body, body_files.prior, SmplifyConfig())
    result = smplify.fit(people.keypoints, people.init_pose, people.init_betas, people.init_cam_t)
    floor = smplify.quality(people.gt_pose, people.gt_betas, people.gt_cam_t, people.keypoints)
    init_error = joint_error_mm(body, people, people.init_pose, people.init_betas)
    fit_error = joint_error_mm(body, people, result.pose, result.betas)
    assert not result.failed.any()
    assert np.median(result.loss) < 1.5 * np.median(floor)
    assert fit_error.mean() < init_error.mean()


def test_effort_sets_each_samples_budget_and_leaves_the_others_alone(body, body_files, problems):
    part = problems.slice(slice(0, 3))
    args = (part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    smplify = SMPLify(body, body_files.prior, SmplifyConfig(iters_camera=3, iters_body=4, polish_iters=3))
    plain = smplify.fit(*args)
    mixed = smplify.fit(*args, effort=np.array([1.0, 3.0, 0.0]))
    # sample 0 has the same budget either way: the longer loop of sample 1 must not change it
    np.testing.assert_allclose(mixed.pose[0], plain.pose[0], atol=1e-5)
    np.testing.assert_allclose(mixed.loss[0], plain.loss[0], rtol=1e-5)
    assert mixed.loss[1] < plain.loss[1]  # three times the steps fit better
    np.testing.assert_array_equal(mixed.pose[2, 3:], part.init_pose[2, 3:])  # no body step at effort 0
    np.testing.assert_allclose(smplify.fit(*args, effort=np.ones(3)).pose, plain.pose, atol=1e-6)
    with pytest.raises(ValueError, match="effort"):
        smplify.fit(*args, effort=np.array([1.0, -1.0, 1.0]))


def test_default_mode_with_the_reference_schedule_reproduces_the_reference(body, body_files, problems):
    part = problems.slice(slice(0, 4))
    args = (part.keypoints, part.init_pose, part.init_betas, part.init_cam_t)
    schedule = dict(optimizer="adam", lr=0.01, iters_camera=10, iters_body=10, polish_iters=0,
                    anchor_weight=0.0, camera_optimizer="adam")
    fast = SMPLify(body, body_files.prior, SmplifyConfig(mode="default", **schedule)).fit(*args)
    reference = SMPLify(body, body_files.prior, SmplifyConfig(mode="reference", **schedule)).fit(*args)
    np.testing.assert_allclose(fast.cam_t, reference.cam_t, atol=1e-3)
    np.testing.assert_allclose(fast.pose, reference.pose, atol=1e-3)
    np.testing.assert_allclose(fast.loss, reference.loss, rtol=1e-3)
