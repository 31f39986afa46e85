"""The fits' 3D error against the hidden ground truth: a real LMDB store, the synthetic body model."""

import numpy as np
import pytest

from spin.evaluation.fit_truth import fit_truth_error


@pytest.fixture()
def truth():
    rng = np.random.default_rng(3)
    n = 8
    pose = (rng.normal(0.0, 0.25, (n, 72))).astype(np.float32)
    betas = rng.normal(0.0, 1.0, (n, 10)).astype(np.float32)
    has_smpl = np.zeros(n, bool)
    has_smpl[[0, 5]] = True
    return pose, betas, has_smpl


def _store(tmp_path, size):
    from store import FitsStore

    store = FitsStore(tmp_path / "fits.lmdb")
    store.declare_dataset("synth_train", size)
    return store


def _put(store, rows, pose, betas, loss):
    keys = [f"synth_train/{i}" for i in rows]
    store.put_if_better(keys, pose, betas, np.zeros((len(rows), 3), np.float32), np.asarray(loss, np.float64))


def test_exact_fits_score_zero_and_gt_rows_are_left_out(tmp_path, body, truth):
    pose, betas, has_smpl = truth
    store = _store(tmp_path, len(pose))
    hidden = np.flatnonzero(~has_smpl)
    _put(store, hidden[:4], pose[hidden[:4]], betas[hidden[:4]], [1.0, 2.0, 50.0, 3.0])
    # a wrong fit of a ground-truth row must not count: those rows are not scored
    _put(store, [0], np.zeros((1, 72), np.float32), np.zeros((1, 10), np.float32), [1.0])
    result = fit_truth_error(store, "synth_train", pose, betas, has_smpl, body, threshold=20.0)
    assert result.hidden == 6 and result.fitted == 4 and result.valid == 3
    assert result.mpjpe == pytest.approx(0.0, abs=1e-3)
    assert result.pa_mpjpe == pytest.approx(0.0, abs=1e-3)
    store.close()


def test_error_grows_with_the_fits_distance_and_only_valid_fits_enter_valid_error(tmp_path, body, truth):
    pose, betas, has_smpl = truth
    store = _store(tmp_path, len(pose))
    hidden = np.flatnonzero(~has_smpl)
    wrong_pose = pose[hidden].copy()
    wrong_pose[:, 3:] += 0.4  # every body joint turned
    _put(store, hidden, wrong_pose, betas[hidden], [100.0] * 3 + [1.0] * 3)
    wrong = fit_truth_error(store, "synth_train", pose, betas, has_smpl, body, threshold=20.0)
    assert wrong.fitted == 6 and wrong.valid == 3
    assert wrong.pa_mpjpe > 20.0 and wrong.mpjpe >= wrong.pa_mpjpe - 1e-6
    # the better half replaces three of the wrong fits: the mean error falls
    _put(store, hidden[:3], pose[hidden[:3]], betas[hidden[:3]], [0.5] * 3)
    better = fit_truth_error(store, "synth_train", pose, betas, has_smpl, body, threshold=20.0)
    assert better.pa_mpjpe < wrong.pa_mpjpe
    assert better.valid == 6
    assert better.valid_pa_mpjpe == pytest.approx(better.pa_mpjpe)
    store.close()


def test_no_fits_or_no_hidden_rows(tmp_path, body, truth):
    pose, betas, has_smpl = truth
    store = _store(tmp_path, len(pose))
    empty = fit_truth_error(store, "synth_train", pose, betas, has_smpl, body)
    assert empty.hidden == 6 and empty.fitted == 0 and empty.mpjpe is None
    none_hidden = fit_truth_error(store, "synth_train", pose, betas, np.ones(len(pose), bool), body)
    assert none_hidden.hidden == 0 and none_hidden.pa_mpjpe is None
    assert set(empty.metrics()) >= {"fit_truth_mpjpe", "fit_truth_pa_mpjpe", "fit_truth_fitted"}
    store.close()


def test_shape_mismatch_is_refused(tmp_path, body, truth):
    pose, betas, has_smpl = truth
    store = _store(tmp_path, len(pose))
    with pytest.raises(ValueError, match="gt_pose"):
        fit_truth_error(store, "synth_train", pose[:3], betas, has_smpl, body)
    store.close()
