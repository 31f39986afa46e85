"""MPJPE / PA-MPJPE: invariances and known values."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.evaluation.metrics import mpjpe, pa_mpjpe, per_vertex_error, procrustes_align
from spin.geometry import axis_angle_to_matrix

rng = np.random.default_rng(0)


def test_mpjpe_is_translation_invariant_and_in_mm():
    gt = rng.normal(size=(4, 14, 3))
    assert np.allclose(mpjpe(gt + np.array([1.0, 2.0, 3.0]), gt), 0, atol=1e-9)
    moved = gt.copy()
    moved[:, 7] += np.array([0.014, 0, 0])  # 14 mm on one of 14 joints (not a hip) → 1 mm mean
    assert np.allclose(mpjpe(moved, gt), 1.0)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(0.5, 2.0), angle=st.tuples(*[st.floats(-3, 3)] * 3), seed=st.integers(0, 1000))
def test_pa_mpjpe_removes_similarity_transforms(scale, angle, seed):
    gt = np.random.default_rng(seed).normal(size=(2, 14, 3))
    rot = axis_angle_to_matrix(torch.tensor(angle, dtype=torch.float64)).numpy()
    pred = scale * gt @ rot.T + np.array([0.3, -1.0, 5.0])
    assert np.all(pa_mpjpe(pred, gt) < 1e-6)


def test_pa_mpjpe_never_exceeds_mpjpe_and_excludes_reflections():
    gt = rng.normal(size=(8, 14, 3))
    pred = gt + 0.05 * rng.normal(size=gt.shape)
    assert np.all(pa_mpjpe(pred, gt) <= mpjpe(pred, gt) + 1e-9)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    aligned = procrustes_align(torch.as_tensor(mirrored), torch.as_tensor(gt))
    assert (aligned - torch.as_tensor(gt)).norm(dim=-1).mean() > 0.1  # a reflection cannot be undone


def test_per_vertex_error_aligns_pelvises():
    gt = rng.normal(size=(2, 100, 3))
    pelvis = rng.normal(size=(2, 1, 3))
    assert np.allclose(per_vertex_error(gt + pelvis, gt, pelvis, np.zeros((2, 1, 3))), 0, atol=1e-9)
