"""FitJobBatch: shapes checked, arrays float32, and the fitting config's validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fitting_workers.config import FittingConfig
from fitting_workers.jobs import FitJobBatch
from spin.errors import UserError


@given(n=st.integers(1, 40), with_cam=st.booleans())
def test_batch_arrays_become_contiguous_float32_of_the_right_shapes(n, with_cam):
    batch = FitJobBatch(
        keys=[f"d/{i}" for i in range(n)],
        keypoints=np.ones((n, 49, 3), np.float64),
        pose=np.zeros((n, 72), np.float64)[:, :],
        betas=np.zeros((n, 20))[:, ::2],
        cam_t=np.zeros((n, 3)) if with_cam else None,
    )
    assert len(batch) == n
    for array in (batch.keypoints, batch.pose, batch.betas):
        assert array.dtype == np.float32 and array.flags.c_contiguous
    assert (batch.cam_t is not None) == with_cam


@pytest.mark.parametrize("field,shape", [("keypoints", (3, 24, 3)), ("pose", (3, 69)), ("betas", (2, 10))])
def test_batch_with_a_wrong_shape_names_the_field(field, shape):
    arrays = {"keypoints": np.zeros((3, 49, 3)), "pose": np.zeros((3, 72)), "betas": np.zeros((3, 10))}
    arrays[field] = np.zeros(shape)
    with pytest.raises(ValueError, match=field):
        FitJobBatch(keys=["a/0", "a/1", "a/2"], **arrays)


def test_empty_batch_is_refused():
    with pytest.raises(ValueError):
        FitJobBatch(keys=[], keypoints=np.zeros((0, 49, 3)), pose=np.zeros((0, 72)), betas=np.zeros((0, 10)))


@pytest.mark.parametrize("override", [{"num_actors": 0}, {"max_inflight_per_actor": 0}, {"mode": "fast"},
                                      {"gpus_per_actor": -0.5}, {"scheduling": "PACK"}])
def test_config_names_the_bad_field(override):
    with pytest.raises(UserError, match=next(iter(override))):
        FittingConfig(**override)


def test_device_follows_the_gpu_share():
    assert FittingConfig().device == "cpu"
    assert FittingConfig(gpus_per_actor=0.25).device == "cuda"
