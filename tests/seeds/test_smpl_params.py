"""One reader for a user's .npz of SMPL parameters (pose banks, `--init` files): what it accepts, and
one sentence naming the file and key for everything it does not."""

from __future__ import annotations

import numpy as np
import pytest

from fitting_workers.dataset_fit import load_initialisation
from spin.data.smpl_params import read_smpl_params
from spin.errors import UserError


def _read(path, rows=None):
    return read_smpl_params(path, "Test file", "pass another", rows=rows, optional=("cam_t",))


def test_betas_under_either_name_with_extra_columns_and_an_optional_camera(tmp_path):
    rng = np.random.default_rng(0)
    pose, shape, cam_t = rng.normal(size=(5, 72)), rng.normal(size=(5, 16)), rng.normal(size=(5, 3))
    np.savez(tmp_path / "a.npz", pose=pose, shape=shape, cam_t=cam_t)
    arrays = _read(tmp_path / "a.npz", rows=5)
    assert set(arrays) == {"pose", "betas", "cam_t"} and all(v.dtype == np.float32 for v in arrays.values())
    np.testing.assert_allclose(arrays["betas"], shape[:, :10], rtol=1e-6)
    init = load_initialisation(tmp_path / "a.npz", 5)  # an --init file may use SPIN's 'shape' too
    np.testing.assert_allclose(init.cam_t, cam_t, rtol=1e-6)
    np.savez(tmp_path / "b.npz", pose=pose, betas=shape[:, :10])
    assert "cam_t" not in _read(tmp_path / "b.npz")


@pytest.mark.parametrize("arrays,rows,words", [
    ({"pose": np.zeros((4, 72)), "betas": np.zeros((3, 10))}, None, ["'betas'", "(3, 10)", "(4)"]),
    ({"pose": np.zeros((4, 72)), "betas": np.zeros((4, 10))}, 6, ["'pose'", "(6,72)", "dataset"]),
    ({"pose": np.zeros((4, 72)), "betas": np.zeros((4, 10)), "cam_t": np.zeros((4, 2))}, 4, ["'cam_t'"]),
    ({"pose": np.zeros((0, 72)), "betas": np.zeros((0, 10))}, None, ["'pose'", "N ≥ 1"]),
    ({"pose": np.zeros((4, 72)), "betas": np.array([["a"] * 10] * 4)}, None, ["'betas'", "non-numeric"]),
    ({"pose": np.zeros((4, 72)), "gender": np.zeros(4)}, None, ["'shape' or 'betas'", "gender"]),
])
def test_each_problem_is_one_sentence_naming_file_and_key(tmp_path, arrays, rows, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError) as err:
        _read(tmp_path / "bad.npz", rows=rows)
    message = str(err.value)
    assert "bad.npz" in message and all(w in message for w in words), message
    assert "\n" not in message
