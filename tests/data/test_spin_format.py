"""SPIN-format dataset files and SPIN's crop transform (float version)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.data.crop import crop_matrix, from_crop, to_crop
from spin.data.spin_format import load_spin_npz, save_spin_npz
from spin.errors import UserError


def spin_get_transform(center, scale, res, rot=0.0):
    """SPIN's get_transform (utils/imutils.py), written out as the test oracle (3x3, float)."""
    h = 200 * scale
    t = np.zeros((3, 3))
    t[0, 0] = float(res) / h
    t[1, 1] = float(res) / h
    t[0, 2] = res * (-float(center[0]) / h + 0.5)
    t[1, 2] = res * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1
    if rot != 0:
        rot = -rot
        rot_mat = np.zeros((3, 3))
        rot_rad = rot * np.pi / 180
        sn, cs = np.sin(rot_rad), np.cos(rot_rad)
        rot_mat[0, :2] = [cs, -sn]
        rot_mat[1, :2] = [sn, cs]
        rot_mat[2, 2] = 1
        t_mat = np.eye(3)
        t_mat[0, 2] = -res / 2
        t_mat[1, 2] = -res / 2
        t_inv = t_mat.copy()
        t_inv[:2, 2] *= -1
        t = t_inv @ rot_mat @ t_mat @ t
    return t


@settings(max_examples=40, deadline=None)
@given(cx=st.floats(-500, 1500), cy=st.floats(-500, 1500), scale=st.floats(0.1, 10),
       rot=st.floats(-60, 60), res=st.sampled_from([64, 224, 256]))
def test_crop_matrix_equals_spin_get_transform(cx, cy, scale, rot, res):
    expected = spin_get_transform((cx, cy), scale, res, rot)[:2]
    got = crop_matrix(np.array([cx, cy]), scale, res, rot)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-7)


def test_box_corners_map_to_crop_corners():
    center, scale = np.array([300.0, 200.0]), 1.5  # box side 300 px: x in [150, 450], y in [50, 350]
    corners = np.array([[150.0, 50.0], [450.0, 350.0], [300.0, 200.0]])
    expected = [[0, 0], [224, 224], [112, 112]]
    np.testing.assert_allclose(to_crop(corners, center, scale, 224), expected, atol=1e-9)


def test_to_crop_batched_matches_single_and_from_crop_inverts():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 600, (5, 7, 2))
    center = rng.uniform(100, 500, (5, 2))
    scale = rng.uniform(0.5, 3, 5)
    rot = rng.uniform(-30, 30, 5)
    batched = to_crop(points, center, scale, 224, rot)
    for i in range(5):
        np.testing.assert_allclose(batched[i], to_crop(points[i], center[i], scale[i], 224, rot[i]))
    np.testing.assert_allclose(from_crop(batched, center, scale, 224, rot), points, atol=1e-9)


def _dataset(n=4, seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = dict(
        imgname=np.array([f"images/{i:05d}.jpg" for i in range(n)]),
        center=rng.uniform(100, 400, (n, 2)).astype(np.float32),
        scale=rng.uniform(0.8, 2.0, n).astype(np.float32),
        part=np.concatenate([rng.uniform(0, 500, (n, 24, 2)), rng.integers(0, 2, (n, 24, 1))], -1),
        openpose=np.concatenate([rng.uniform(0, 500, (n, 25, 2)), rng.uniform(0, 1, (n, 25, 1))], -1),
    )
    arrays.update(extra)
    return arrays


def test_round_trip_maps_keypoints_into_the_crop(tmp_path):
    arrays = _dataset(pose=np.zeros((4, 72)), shape=np.ones((4, 10)), has_smpl=np.array([1, 0, 1, 1]),
                      S=np.ones((4, 24, 4)), gender=np.array(["m", "f", "m", "f"]))
    save_spin_npz(tmp_path / "d.npz", **arrays)
    ann = load_spin_npz(tmp_path / "d.npz")
    assert len(ann) == 4 and ann.keypoints.shape == (4, 49, 3) and ann.keypoints.dtype == np.float32
    image_kp = np.concatenate([arrays["openpose"], arrays["part"]], axis=1)
    expected = to_crop(image_kp[..., :2], arrays["center"], arrays["scale"], 224)
    np.testing.assert_allclose(ann.keypoints[..., :2], expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(ann.keypoints[..., 2], image_kp[..., 2].astype(np.float32))
    assert ann.has_smpl.tolist() == [True, False, True, True]
    assert ann.pose.shape == (4, 72) and ann.betas.shape == (4, 10) and ann.S.shape == (4, 24, 4)
    assert ann.gender.tolist() == ["m", "f", "m", "f"]
    assert ann.imgname[2] == "images/00002.jpg"


def test_optional_keys_may_be_missing(tmp_path):
    arrays = _dataset()
    del arrays["openpose"]
    np.savez(tmp_path / "d.npz", **arrays)
    ann = load_spin_npz(tmp_path / "d.npz", img_res=256)
    assert ann.pose is None and ann.betas is None and ann.S is None and ann.gender is None
    assert not ann.has_smpl.any()
    assert (ann.keypoints[:, :25, 2] == 0).all()  # missing OpenPose reads as confidence 0, as in SPIN


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("part", np.zeros((4, 17, 3)), "'part' has shape"),
        ("openpose", np.full((4, 25, 3), np.nan), "'openpose' holds NaN"),
        ("center", np.zeros((3, 2)), "'center' has shape"),
        ("scale", np.zeros(4), "'scale'"),
        ("pose", np.zeros((4, 69)), "'pose' has shape"),
    ],
)
def test_bad_arrays_name_the_key(tmp_path, key, value, message):
    arrays = _dataset()
    arrays[key] = value
    if key == "pose":
        arrays["shape"] = np.zeros((4, 10))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message) as err:
        load_spin_npz(tmp_path / "bad.npz")
    assert "bad.npz" in str(err.value)


def test_missing_file_and_missing_required_key(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_spin_npz(tmp_path / "nope.npz")
    arrays = _dataset()
    del arrays["center"]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(UserError, match="'center'"):
        load_spin_npz(tmp_path / "d.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(UserError, match="junk.npz"):
        load_spin_npz(tmp_path / "junk.npz")


def test_writer_refuses_what_the_reader_would(tmp_path):
    with pytest.raises(UserError, match="'S'"):
        save_spin_npz(tmp_path / "d.npz", **_dataset(S=np.zeros((4, 24, 3))))
    with pytest.raises(UserError, match="unknown keys"):
        save_spin_npz(tmp_path / "d.npz", **_dataset(keypoints=np.zeros((4, 49, 3))))
    assert not (tmp_path / "d.npz").exists()
