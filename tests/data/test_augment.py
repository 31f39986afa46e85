"""SPIN's augmentation: sampling, exact inverses, and agreement between image, keypoint and 3D transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.data.augment import (
    AugmentConfig,
    augment_cam_t,
    augment_joints3d,
    augment_keypoints,
    augment_pose,
    canonicalise_cam_t,
    canonicalise_joints3d,
    canonicalise_keypoints,
    canonicalise_pose,
    crop_image,
    sample_augmentation,
)
from spin.data.crop import to_crop
from spin.geometry import axis_angle_to_matrix
from spin.joints import flip_keypoints

flips = st.booleans()
rotations = st.floats(-60, 60)
scales = st.floats(0.75, 1.25)


def random_pose(seed: int, batch: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.4, (batch, 72)).astype(np.float32)
    # global orientations of every size, up to just under π
    axis = rng.normal(size=(batch, 3))
    pose[:, :3] = axis / np.linalg.norm(axis, axis=1, keepdims=True) * rng.uniform(0, 3.1, (batch, 1))
    return pose


def assert_same_pose(a: np.ndarray, b: np.ndarray) -> None:
    """Global orientations equal as rotations (axis-angle is not unique), the rest equal as numbers."""
    ra = axis_angle_to_matrix(torch.from_numpy(a[:, :3]).double())
    rb = axis_angle_to_matrix(torch.from_numpy(b[:, :3]).double())
    torch.testing.assert_close(ra, rb, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a[:, 3:], b[:, 3:], atol=1e-6)


def test_sample_augmentation_follows_spin_distribution():
    config = AugmentConfig()
    rng = np.random.default_rng(0)
    draws = [sample_augmentation(config, rng) for _ in range(4000)]
    rot = np.array([d.rot_deg for d in draws])
    scale = np.array([d.scale for d in draws])
    noise = np.array([d.pixel_noise for d in draws])
    flip = np.array([d.flip for d in draws])
    assert np.abs(rot).max() <= 60 and 0.57 < (rot == 0).mean() < 0.63
    assert 0.75 <= scale.min() and scale.max() <= 1.25 and abs(np.median(scale) - 1) < 0.02
    assert 0.6 <= noise.min() and noise.max() <= 1.4
    assert 0.47 < flip.mean() < 0.53
    # identity config never changes anything
    none = AugmentConfig(flip_prob=0, rot_zero_prob=1, scale_std=0, scale_clip=0, pixel_noise=0)
    d = sample_augmentation(none, rng)
    assert (d.flip, d.rot_deg, d.scale, d.pixel_noise) == (False, 0.0, 1.0, (1.0, 1.0, 1.0))


def test_sample_augmentation_uses_numpy_global_generator_when_seeded():
    np.random.seed(5)
    a = sample_augmentation(AugmentConfig())
    np.random.seed(5)
    assert sample_augmentation(AugmentConfig()) == a


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), flip=flips, rot=rotations)
def test_canonicalise_pose_inverts_augment_pose(seed, flip, rot):
    pose = random_pose(seed)
    augmented = augment_pose(pose, flip, rot)
    assert augmented.shape == pose.shape and augmented.dtype == pose.dtype
    assert_same_pose(canonicalise_pose(augmented, flip, rot), pose)
    # and the other way round
    assert_same_pose(augment_pose(canonicalise_pose(pose, flip, rot), flip, rot), pose)


def test_pose_per_sample_parameters_and_torch_match_numpy():
    pose = random_pose(1, batch=3)
    flip, rot = np.array([True, False, True]), np.array([10.0, -25.0, 0.0])
    batched = augment_pose(pose, flip, rot)
    for i in range(3):
        assert_same_pose(batched[i:i + 1], augment_pose(pose[i:i + 1], bool(flip[i]), float(rot[i])))
    as_torch = augment_pose(torch.from_numpy(pose), torch.from_numpy(flip), torch.from_numpy(rot))
    assert isinstance(as_torch, torch.Tensor)
    np.testing.assert_allclose(as_torch.numpy(), batched, atol=1e-6)


def test_flip_twice_is_identity_and_no_augmentation_is_bit_exact():
    pose = random_pose(2)
    twice = augment_pose(augment_pose(pose, True, 0.0), True, 0.0)
    np.testing.assert_array_equal(twice, pose)
    np.testing.assert_array_equal(augment_pose(pose, False, 0.0), pose)
    kp = np.random.default_rng(0).uniform(0, 224, (2, 49, 3)).astype(np.float32)
    np.testing.assert_allclose(augment_keypoints(augment_keypoints(kp, True, 0, 1, 224), True, 0, 1, 224), kp,
                               atol=1e-4)
    j3d = np.random.default_rng(1).normal(size=(2, 24, 4)).astype(np.float32)
    np.testing.assert_array_equal(augment_joints3d(augment_joints3d(j3d, True, 0), True, 0), j3d)


def test_flip_changes_the_pose_of_an_asymmetric_body():
    pose = random_pose(3)
    assert not np.allclose(augment_pose(pose, True, 0.0), pose)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), flip=flips, rot=rotations, scale=scales, res=st.sampled_from([64, 224]))
def test_keypoint_augmentation_equals_cropping_image_keypoints(seed, flip, rot, scale, res):
    """Augmenting canonical crop keypoints == cropping image keypoints with the augmented box, mirrored."""
    rng = np.random.default_rng(seed)
    image_kp = np.concatenate([rng.uniform(-50, 700, (1, 49, 2)), rng.uniform(0, 1, (1, 49, 1))], -1)
    center, box_scale = rng.uniform(200, 400, 2), rng.uniform(1.0, 3.0)
    canonical = image_kp.copy()
    canonical[..., :2] = to_crop(image_kp[..., :2], center, box_scale, res)
    expected = image_kp.copy()
    expected[..., :2] = to_crop(image_kp[..., :2], center, box_scale * scale, res, rot)
    if flip:
        expected = flip_keypoints(expected, res)
    got = augment_keypoints(canonical, flip, rot, scale, res)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(canonicalise_keypoints(got, flip, rot, scale, res), canonical, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), flip=flips, rot=rotations)
def test_3d_augmentation_projects_onto_keypoint_augmentation(seed, flip, rot):
    """Rotating/mirroring 3D joints then projecting == projecting then augmenting the 2D keypoints."""
    rng = np.random.default_rng(seed)
    joints = rng.normal(0, 0.5, (2, 49, 3)) + np.array([0.3, -0.2, 40.0])

    def project(points):
        kp = np.ones((*points.shape[:-1], 3))
        kp[..., :2] = 5000.0 * points[..., :2] / points[..., 2:3] + 112.0
        return kp

    got = project(augment_joints3d(joints, flip, rot))
    expected = augment_keypoints(project(joints), flip, rot, 1.0, 224)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(canonicalise_joints3d(augment_joints3d(joints, flip, rot), flip, rot), joints,
                               atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), flip=flips, rot=rotations, scale=scales)
def test_canonicalise_cam_t_inverts_augment_cam_t(seed, flip, rot, scale):
    rng = np.random.default_rng(seed)
    cam_t = rng.normal(0, 0.2, (3, 3)) + np.array([0.0, 0.0, 40.0])
    root = rng.normal(0, 0.05, (3, 3))
    augmented = augment_cam_t(cam_t, root, flip, rot, scale)
    np.testing.assert_allclose(canonicalise_cam_t(augmented, root, flip, rot, scale), cam_t, atol=1e-9)


def test_augmenting_the_box_scale_moves_the_root_depth():
    cam_t, root = np.array([[0.1, -0.2, 40.0]]), np.array([[0.0, 0.2, 0.0]])
    out = augment_cam_t(cam_t, root, False, 0.0, 1.25)
    np.testing.assert_allclose(out, [[0.1, -0.2, 50.0]])


def marker_image(x: float, y: float, size=(300, 200)) -> np.ndarray:
    """A black image with a 5×5 white square centred on continuous pixel (x, y) (x, y at pixel centres)."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    ix, iy = int(x), int(y)
    image[iy - 2:iy + 3, ix - 2:ix + 3] = 255
    return image


def centroid(image: np.ndarray) -> np.ndarray:
    w = image[..., 0].astype(np.float64)
    ys, xs = np.mgrid[:image.shape[0], :image.shape[1]]
    return np.array([(w * (xs + 0.5)).sum() / w.sum(), (w * (ys + 0.5)).sum() / w.sum()])


@pytest.mark.parametrize("flip,rot,scale,res", [(False, 0.0, 1.0, 128), (True, 0.0, 1.0, 128),
                                                (False, 35.0, 1.0, 96), (True, -50.0, 1.2, 224),
                                                (False, 20.0, 0.8, 64)])
def test_crop_image_moves_pixels_like_the_keypoints(flip, rot, scale, res):
    point = np.array([171.5, 93.5])  # a pixel centre
    center, box_scale = np.array([160.0, 100.0]), 0.9
    crop = crop_image(marker_image(*point), center, box_scale * scale, res, rot, flip)
    expected = np.zeros((1, 49, 3))
    expected[0, :, :2] = to_crop(point[None], center, box_scale * scale, res, rot)
    if flip:
        expected = flip_keypoints(expected, res)
    np.testing.assert_allclose(centroid(crop), expected[0, 0, :2], atol=0.25)


def test_crop_image_of_the_whole_image_is_the_image():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_image(image, (32.0, 32.0), 64 / 200, 64), image)
    np.testing.assert_array_equal(crop_image(image, (32.0, 32.0), 64 / 200, 64, flip=True), image[:, ::-1])


def test_crop_image_of_a_large_box_is_prefiltered_not_aliased():
    # A fine checkerboard averages to grey when shrunk 8×; point sampling would keep full contrast.
    board = (np.indices((800, 800)).sum(0) % 2 * 255).astype(np.uint8)
    image = np.repeat(board[..., None], 3, axis=2)
    crop = crop_image(image, (400.0, 400.0), 4.0, 100)
    assert crop.std() < 10 and abs(crop.mean() - 127.5) < 10
