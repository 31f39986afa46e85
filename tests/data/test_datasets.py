"""SpinImageDataset and MixedDataset: the item contract, index integrity, augmentation consistency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spin.data.augment import AugmentConfig, AugmentParams, augment_cam_t, augment_pose
from spin.data.crop import to_crop
from spin.data.datasets import IMAGENET_MEAN, IMAGENET_STD, MixedDataset, SpinImageDataset
from spin.data.spin_format import load_spin_npz
from spin.errors import UserError
from spin.joints import FLIP_PERM_KEYPOINTS, JOINT_INDEX, NUM_OPENPOSE, flip_keypoints

PARAMS = [AugmentParams(), AugmentParams(flip=True), AugmentParams(rot_deg=35.0),
          AugmentParams(flip=True, rot_deg=-48.0, scale=1.2), AugmentParams(rot_deg=20.0, scale=0.8)]


def test_item_has_the_contract_fields(noise_free_data):
    _, paths = noise_free_data
    dataset = SpinImageDataset(paths["train"], img_res=64, augment=AugmentConfig())
    item = dataset[3]
    shapes = {"img": (3, 64, 64), "keypoints": (49, 3), "keypoints_crop": (49, 3), "pose": (72,),
              "betas": (10,), "pose_3d": (24, 4), "has_smpl": (), "has_pose_3d": (), "sample_index": (),
              "flip": (), "rot": (), "scale": ()}
    for name, shape in shapes.items():
        assert isinstance(item[name], torch.Tensor) and tuple(item[name].shape) == shape, name
    for name in ("img", "keypoints", "keypoints_crop", "pose", "betas", "pose_3d", "rot", "scale"):
        assert item[name].dtype == torch.float32, name
    for name in ("has_smpl", "has_pose_3d", "flip"):
        assert item[name].dtype == torch.bool, name
    assert item["key"] == "synthetic_train/3" and item["sample_index"].item() == 3
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    assert batch["img"].shape == (2, 3, 64, 64) and batch["key"] == ["synthetic_train/0", "synthetic_train/1"]


def test_index_integrity_keys_and_keypoints_match_the_npz_rows(noise_free_data):
    _, paths = noise_free_data
    annotations = load_spin_npz(paths["train"])
    dataset = SpinImageDataset(paths["train"], name="synth", img_res=96, augment=None)
    for i in range(len(dataset)):
        item = dataset[i]
        assert item["key"] == f"synth/{i}" and item["sample_index"].item() == i
        np.testing.assert_array_equal(item["keypoints_crop"].numpy(), annotations.keypoints[i])
        # no augmentation: normalised keypoints are the canonical crop keypoints rescaled
        np.testing.assert_allclose((item["keypoints"][:, :2].numpy() + 1) * 112,
                                   annotations.keypoints[i, :, :2], atol=1e-4)
        assert bool(item["has_smpl"]) == bool(annotations.has_smpl[i])
        if not annotations.has_smpl[i]:
            assert not item["pose"].any() and not item["betas"].any()
        else:
            np.testing.assert_array_equal(item["pose"].numpy(), annotations.pose[i])
        assert not item["flip"] and item["rot"] == 0 and item["scale"] == 1


@pytest.mark.parametrize("params", PARAMS)
def test_augmented_keypoints_are_the_image_keypoints_in_the_augmented_crop(noise_free_data, params):
    _, paths = noise_free_data
    res = 80
    with np.load(paths["train"]) as raw:
        image_kp = np.concatenate([raw["openpose"], raw["part"]], axis=1)
        center, scale = raw["center"], raw["scale"]
    dataset = SpinImageDataset(paths["train"], img_res=res)
    i = 4
    expected = image_kp[i:i + 1].astype(np.float64)
    expected[..., :2] = to_crop(expected[..., :2], center[i], scale[i] * params.scale, res, params.rot_deg)
    if params.flip:
        expected = flip_keypoints(expected, res)
    got = dataset.item(i, params)["keypoints"].numpy()
    np.testing.assert_allclose((got[:, :2] + 1) * res / 2, expected[0, :, :2], atol=2e-3)
    np.testing.assert_array_equal(got[:, 2], expected[0, :, 2])


@pytest.mark.parametrize("params", PARAMS)
def test_a_fit_transformed_with_the_augmentation_projects_onto_the_augmented_keypoints(body, noise_free_data,
                                                                                        params):
    """A canonical fit (pose, betas, cam_t) + the sample's augmentation lands on the item's keypoints."""
    _, paths = noise_free_data
    annotations = load_spin_npz(paths["test"])
    dataset = SpinImageDataset(paths["test"], img_res=64)
    pose = torch.from_numpy(annotations.pose)
    betas = torch.from_numpy(annotations.betas)
    with torch.no_grad():
        canonical = body(pose, betas)
    # the ground-truth translation: S is the model's GT joints moved by it
    cam_t = (torch.from_numpy(annotations.S[..., :3]) - canonical.joints[:, NUM_OPENPOSE:]).mean(1).double()
    root = canonical.smpl_joints[:, 0].double()
    n = len(dataset)
    aug_pose = augment_pose(pose, params.flip, params.rot_deg)
    aug_cam_t = augment_cam_t(cam_t, root, params.flip, params.rot_deg, params.scale)
    with torch.no_grad():
        posed = body.joints(aug_pose, betas).double()
    joints = posed + aug_cam_t[:, None]
    # 3D joints are rotated/mirrored like SPIN's S, never moved in depth by the box scale
    joints_3d = posed + augment_cam_t(cam_t, root, params.flip, params.rot_deg)[:, None]
    projected = 5000.0 * joints[..., :2] / joints[..., 2:3] + 112.0  # 224-crop convention
    for i in range(n):
        item = dataset.item(i, params)
        target = (item["keypoints"][:, :2].double() + 1) * 112.0
        error = (projected[i] - target).norm(dim=-1)
        # rotation and flip are exact; the box scale is a depth change, exact for the root only
        # (see augment_cam_t)
        assert error.max() < (0.02 if params.scale == 1 else 0.6), (i, error.max())
        # the item's GT pose is the same transform of the canonical pose, its 3D joints the same body
        np.testing.assert_allclose(item["pose"].numpy(), aug_pose[i].numpy(), atol=1e-6)
        np.testing.assert_allclose(item["pose_3d"][:, :3].numpy(), joints_3d[i, NUM_OPENPOSE:].numpy(),
                                   atol=2e-3)


LIMB_SEGMENTS = [("Right Hip", "Right Knee"), ("Left Hip", "Left Knee"), ("Right Knee", "Right Ankle"),
                 ("Left Knee", "Left Ankle"), ("Right Shoulder", "Right Elbow"),
                 ("Left Shoulder", "Left Elbow"), ("Pelvis (MPII)", "Thorax (MPII)")]


@pytest.mark.parametrize("params", PARAMS[1:])
def test_the_augmented_image_moves_with_the_augmented_keypoints(noise_free_data, params):
    """The colour at a limb's midpoint in the augmented crop is that limb's colour in the canonical crop."""
    _, paths = noise_free_data
    res = 96
    dataset = SpinImageDataset(paths["test"], img_res=res)

    def rgb(item):
        image = item["img"].numpy().transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
        return (image * 255).astype(np.float64)

    def colour_at(image, keypoints, a, b):
        mid = ((keypoints[a, :2] + keypoints[b, :2]) / 2 + 1) * res / 2
        x, y = np.clip(mid.astype(int), 0, res - 1)
        return image[y, x]

    distances, wrong = [], []
    for i in range(len(dataset)):
        plain, augmented = dataset.item(i, AugmentParams()), dataset.item(i, params)
        image_p, image_a = rgb(plain), rgb(augmented)
        kp_p, kp_a = plain["keypoints"].numpy(), augmented["keypoints"].numpy()
        for a_name, b_name in LIMB_SEGMENTS:
            a, b = JOINT_INDEX[a_name], JOINT_INDEX[b_name]
            # a flipped crop mirrors the body: augmented joint j is canonical joint FLIP_PERM[j]
            ca, cb = (FLIP_PERM_KEYPOINTS[a], FLIP_PERM_KEYPOINTS[b]) if params.flip else (a, b)
            distances.append(np.abs(colour_at(image_a, kp_a, a, b) - colour_at(image_p, kp_p, ca, cb)).sum())
            if params.flip and ca != a:
                wrong.append(np.abs(colour_at(image_a, kp_a, a, b) - colour_at(image_p, kp_p, a, b)).sum())
    assert np.median(distances) < 30
    if wrong:  # reading the un-permuted limb instead gives the other side's colour
        assert np.median(wrong) > 100


def test_mixed_dataset_maps_global_indices_and_keeps_keys(noise_free_data):
    _, paths = noise_free_data
    train = SpinImageDataset(paths["train"], name="a", img_res=32)
    test = SpinImageDataset(paths["test"], name="b", img_res=32)
    mixed = MixedDataset([train, test], ratios=[0.3, 0.7])
    assert len(mixed) == 14
    assert mixed.locate(0) == (0, 0) and mixed.locate(9) == (0, 9) and mixed.locate(10) == (1, 0)
    assert mixed.locate(13) == (1, 3)
    assert [mixed[g]["key"] for g in (0, 9, 10, 13)] == ["a/0", "a/9", "b/0", "b/3"]
    weights = mixed.sample_weights()
    assert weights.shape == (14,)
    np.testing.assert_allclose([weights[:10].sum(), weights[10:].sum()], [0.3, 0.7])
    with pytest.raises(IndexError):
        mixed.locate(14)
    with pytest.raises(UserError):
        MixedDataset([train, SpinImageDataset(paths["train"], name="a", img_res=32)])


def test_missing_images_are_a_user_error(noise_free_data, tmp_path):
    _, paths = noise_free_data
    with pytest.raises(UserError, match="neither a folder nor"):
        SpinImageDataset(paths["train"], images=tmp_path / "nowhere")
    dataset = SpinImageDataset(paths["train"], images=tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        dataset[0]
