"""The pieces of whole-dataset fitting that need no Ray: initialisations, keys, user errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fitting_workers.dataset_fit import (
    check_dataset_name,
    dataset_keys,
    load_initialisation,
    mean_initialisation,
)
from spin.body.files import resolve_body_files
from spin.errors import UserError
from spin.geometry import axis_angle_to_matrix


@pytest.mark.parametrize("with_mean_params", [True, False])
def test_mean_initialisation_stands_upright_facing_the_camera(with_mean_params):
    files = resolve_body_files()
    if not with_mean_params:
        files = dataclasses.replace(files, mean_params=None)
    init = mean_initialisation(files, 5)
    assert init.pose.shape == (5, 72) and init.betas.shape == (5, 10) and init.cam_t is None
    assert init.pose.dtype == np.float32 and np.isfinite(init.pose).all()
    assert (init.pose == init.pose[0]).all()
    # SPIN's camera frame: y down, looking down +z; an upright person facing it is R_x(π) of SMPL's frame.
    orient = axis_angle_to_matrix(torch.as_tensor(init.pose[0, :3]))
    assert torch.allclose(orient @ torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]), atol=0.1)
    assert torch.allclose(orient @ torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 0.0, -1.0]), atol=0.1)


def test_initialisation_file_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"pose": rng.normal(size=(4, 72)), "betas": rng.normal(size=(4, 10)),
              "cam_t": rng.normal(size=(4, 3))}
    np.savez(tmp_path / "init.npz", **arrays)
    init = load_initialisation(tmp_path / "init.npz", 4)
    for key, value in arrays.items():
        np.testing.assert_allclose(getattr(init, key), value.astype(np.float32))


@pytest.mark.parametrize(
    "arrays,named",
    [
        ({"pose": np.zeros((4, 72))}, "betas"),
        ({"pose": np.zeros((3, 72)), "betas": np.zeros((4, 10))}, "pose"),
        ({"pose": np.zeros((4, 72)), "betas": np.zeros((4, 10)), "cam_t": np.zeros((4, 2))}, "cam_t"),
        ({"pose": np.full((4, 72), np.nan), "betas": np.zeros((4, 10))}, "pose"),
    ],
)
def test_a_bad_initialisation_file_is_a_user_error_naming_the_key(tmp_path, arrays, named):
    np.savez(tmp_path / "init.npz", **arrays)
    with pytest.raises(UserError, match=named):
        load_initialisation(tmp_path / "init.npz", 4)


def test_a_missing_initialisation_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="--init"):
        load_initialisation(tmp_path / "nope.npz", 4)


@pytest.mark.parametrize("name", ["", "a/b", "my set"])
def test_dataset_names_that_cannot_prefix_keys_are_refused(name):
    with pytest.raises(UserError, match="--dataset"):
        check_dataset_name(name)


def test_keys_are_dataset_slash_index():
    assert dataset_keys("lsp", 3) == ["lsp/0", "lsp/1", "lsp/2"]
