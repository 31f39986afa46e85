"""The synthetic dataset generator: determinism, ground truth that reprojects, what the images show."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from spin.data.spin_format import load_spin_npz
from spin.data.synthetic import SynthConfig, synthesize_dataset
from spin.joints import JOINT_INDEX, NUM_OPENPOSE

TORSO = [JOINT_INDEX[n] for n in ("OP MidHip", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)")]


def model_joints(body, pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return body.joints(torch.from_numpy(pose), torch.from_numpy(betas)).double().numpy()


def ground_truth_camera(body, annotations) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) camera translations recovered as S − model joints, and the per-row spread of that difference."""
    joints = model_joints(body, annotations.pose, annotations.betas)[:, NUM_OPENPOSE:]
    diff = annotations.S[..., :3].astype(np.float64) - joints
    return diff.mean(1), diff.std(1).max(1)


def test_same_seed_same_dataset_other_seed_other_dataset(body, tmp_path):
    def make(folder, seed):
        synthesize_dataset(tmp_path / folder, body, n_train=3, n_test=2, image_size=64, seed=seed,
                           gt_fraction=0.5, progress=False)
        with np.load(tmp_path / folder / "synthetic_train.npz") as data:
            arrays = {k: data[k] for k in data.files}
        images = [(tmp_path / folder / name).read_bytes() for name in arrays["imgname"]]
        return arrays, images

    a, images_a = make("a", 7)
    b, images_b = make("b", 7)
    c, images_c = make("c", 8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert images_a == images_b
    assert not np.array_equal(a["part"], c["part"]) and images_a != images_c


def test_ground_truth_reprojects_exactly_onto_the_keypoints(body, noise_free_data):
    _, paths = noise_free_data
    test = load_spin_npz(paths["test"])
    cam_t, spread = ground_truth_camera(body, test)
    assert spread.max() < 1e-4  # S is the model's joints moved rigidly by one translation
    joints = model_joints(body, test.pose, test.betas) + cam_t[:, None]
    projected = 5000.0 * joints[..., :2] / joints[..., 2:3] + 112.0
    np.testing.assert_allclose(projected, test.keypoints[..., :2], atol=0.02)
    assert (test.keypoints[..., 2] > 0).all()  # noise-free: nothing occluded, all inside the image


def test_ground_truth_kept_for_the_chosen_fraction_only(noise_free_data):
    _, paths = noise_free_data
    train, test = load_spin_npz(paths["train"]), load_spin_npz(paths["test"])
    assert train.has_smpl.sum() == 5 and test.has_smpl.all()
    assert np.all(train.pose[~train.has_smpl] == 0) and np.all(train.betas[~train.has_smpl] == 0)
    assert np.all(np.abs(train.pose[train.has_smpl]).sum(1) > 0)
    assert np.all(np.abs(train.betas).max(1) <= 2.5)
    assert (train.S[..., 3] == 1).all() and (test.S[..., 3] == 1).all()


def test_openpose_keypoints_carry_noise_and_occlusions(body, tmp_path):
    size = 64
    config = SynthConfig(keypoint_noise_px=2.5, occlusion_prob=0.1)
    paths = synthesize_dataset(tmp_path, body, n_train=40, n_test=0, image_size=size, seed=1, gt_fraction=0.0,
                               config=config, progress=False)
    with np.load(paths["train"]) as data:
        openpose, part = data["openpose"], data["part"]
    conf = openpose[..., 2]
    assert 0.06 < (conf == 0).mean() < 0.14
    assert conf[conf > 0].min() >= 0.5 and conf.max() <= 1.0
    assert np.all(openpose[conf == 0] == 0)
    # OP RKnee / OP LAnkle vs the exact GT Right Knee / Left Ankle: noise of 2.5 px at the 224 scale
    pairs = [(JOINT_INDEX["OP RKnee"], JOINT_INDEX["Right Knee"]),
             (JOINT_INDEX["OP LAnkle"], JOINT_INDEX["Left Ankle"])]
    errors = np.concatenate([(openpose[:, o, :2] - part[:, g - NUM_OPENPOSE, :2])[conf[:, o] > 0]
                             for o, g in pairs])
    assert abs(errors.std() * 224 / size - 2.5) < 0.5


def test_images_show_the_person_where_the_keypoints_are(noise_free_data):
    out, paths = noise_free_data
    for split in ("train", "test"):
        annotations = load_spin_npz(paths[split], img_res=224)
        with np.load(paths[split]) as raw:
            part, openpose = raw["part"], raw["openpose"]
        image_kp = np.concatenate([openpose, part], axis=1)
        for i, name in enumerate(annotations.imgname):
            image = np.asarray(Image.open(out / name).convert("RGB")).astype(np.float64)
            size = image.shape[0]
            border = np.concatenate([image[:3].reshape(-1, 3), image[-3:].reshape(-1, 3),
                                     image[:, :3].reshape(-1, 3), image[:, -3:].reshape(-1, 3)])
            background = np.median(border, axis=0)
            for j in TORSO:
                x, y = np.clip(image_kp[i, j, :2].astype(int), 1, size - 2)
                patch = image[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0)
                assert np.abs(patch - background).sum() > 40, (split, i, j)
            # the body fills most of the box, upright
            gt = part[i]
            extent = (gt[:, :2].max(0) - gt[:, :2].min(0)).max() / size
            assert 0.4 < extent < 0.95


def test_reuse_returns_an_identical_earlier_generation(body, tmp_path):
    first = synthesize_dataset(tmp_path, body, n_train=2, n_test=1, image_size=64, seed=0, progress=False)
    stamp = first["train"].stat().st_mtime_ns
    again = synthesize_dataset(tmp_path, body, n_train=2, n_test=1, image_size=64, seed=0, progress=False,
                               reuse=True)
    assert again == first and first["train"].stat().st_mtime_ns == stamp
    other = synthesize_dataset(tmp_path, body, n_train=2, n_test=1, image_size=64, seed=1, progress=False,
                               reuse=True)
    assert other["train"].stat().st_mtime_ns != stamp


def test_hidden_truth_holds_every_rows_parameters_and_redraws_without_its_file(body, noise_free_data):
    from spin.data.synthetic import hidden_truth, truth_path

    _, paths = noise_free_data
    train = load_spin_npz(paths["train"])
    pose, betas = hidden_truth(paths["train"])
    kept = train.has_smpl.astype(bool)
    np.testing.assert_array_equal(pose[kept], train.pose[kept])
    np.testing.assert_array_equal(betas[kept], train.betas[kept])
    assert np.all(np.abs(pose[~kept]).sum(1) > 0)  # the hidden rows' truth is there too
    # S (all rows) is the true body moved rigidly: the hidden rows' truth reproduces it up to a shift
    joints = model_joints(body, pose, betas)[:, NUM_OPENPOSE:]
    diff = train.S[..., :3].astype(np.float64) - joints
    assert diff.std(1).max() < 1e-4
    # a dataset made before the truth file existed: re-drawn from its meta, identically
    file = truth_path(paths["train"])
    saved = file.read_bytes()
    file.unlink()
    try:
        redrawn_pose, redrawn_betas = hidden_truth(paths["train"])
    finally:
        file.write_bytes(saved)
    np.testing.assert_array_equal(redrawn_pose, pose)
    np.testing.assert_array_equal(redrawn_betas, betas)
