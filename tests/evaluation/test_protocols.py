"""SPIN's protocols on known answers: identical prediction → 0 mm, a rigid transform → PA 0, a known
offset → its MPJPE, hand-made PCK/AUC; each protocol end to end on synthetic data; clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spin.body import resolve_body_files
from spin.data.datasets import SpinImageDataset
from spin.data.spin_format import save_spin_npz
from spin.errors import UserError
from spin.evaluation.protocol_eval import evaluate_protocol, gendered_bodies, load_h36m_regressor
from spin.evaluation.protocols import (
    H36M_TO_J17,
    J24_TO_J17,
    PROTOCOLS,
    auc,
    pck,
    regressed_joints,
    score,
)
from spin.geometry import axis_angle_to_matrix
from spin.models import RegressorOutput


def _rotation(seed: int) -> torch.Tensor:
    q = torch.randn(4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return axis_angle_to_matrix((q[:3] / q[:3].norm() * (1.0 + q[3].abs()))[None])[0]


def _joints(n=3, j=14, seed=0):
    return torch.randn(n, j, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 0.3


def test_identical_prediction_scores_zero():
    gt = _joints()
    out = score(PROTOCOLS["mpi-inf-3dhp"], gt.clone(), gt)
    assert np.all(out["mpjpe"] == 0) and np.all(out["pa_mpjpe"] < 1e-9)
    assert np.all(out["pck"] == 1) and np.all(out["auc"] == 1)
    assert np.all(out["pa_auc"] >= 30 / 31)  # alignment leaves ~1e-12 mm: only the 0 mm threshold can miss


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.5, 2.0))
def test_similarity_transform_is_removed_by_the_alignment(seed, scale):
    gt = _joints(seed=seed)
    pred = scale * gt @ _rotation(seed).T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    out = score(PROTOCOLS["h36m-p1"], pred, gt)
    assert np.all(out["pa_mpjpe"] < 1e-6) and np.all(out["mpjpe"] > 1.0)


def test_known_offset_gives_its_mpjpe():
    gt = _joints()
    offset = torch.tensor([0.048, 0.0, 0.02], dtype=torch.float64)  # 52 mm
    out = score(PROTOCOLS["mpi-inf-3dhp"], gt + offset, gt)
    np.testing.assert_allclose(out["mpjpe"], 52.0, rtol=1e-9)
    assert np.all(out["pa_mpjpe"] < 1e-6)
    # 52 mm everywhere: within 150 mm; AUC counts the thresholds from 55 mm (55..150: 20 of 31).
    np.testing.assert_allclose(out["pck"], 1.0)
    np.testing.assert_allclose(out["auc"], 20 / 31)


def test_pck_and_auc_on_hand_made_errors():
    errors = np.array([[10.0, 200.0, 149.9, 150.0], [0.0, 0.0, 0.0, 0.0], [75.0, 75.0, 75.0, 75.0]])
    np.testing.assert_allclose(pck(errors), [0.75, 1.0, 1.0])  # 150 mm is within, 200 mm is not
    np.testing.assert_allclose(pck(errors, 100.0), [0.25, 1.0, 1.0])
    np.testing.assert_allclose(auc(errors[1:]), [1.0, 16 / 31])  # 75 mm: thresholds 75..150


# ------------------------------------------------------------------------------ end to end
class _Oracle(nn.Module):
    """Predicts the dataset's own ground-truth SMPL parameters, in loader order."""

    def __init__(self, pose, betas):
        super().__init__()
        self.pose, self.betas, self.at = pose, betas, 0

    def forward(self, images):
        n = images.shape[0]
        pose = torch.as_tensor(self.pose[self.at:self.at + n]).reshape(n, 24, 3)
        betas = torch.as_tensor(self.betas[self.at:self.at + n])
        self.at += n
        return RegressorOutput(rotmat=axis_angle_to_matrix(pose), betas=betas, cam=torch.ones(n, 3))


@pytest.fixture(scope="module")
def files():
    return resolve_body_files()


@pytest.fixture(scope="module")
def h36m(files):
    return load_h36m_regressor(files.joint_regressor_h36m, "h36m-p1")


@pytest.fixture(scope="module")
def protocol_split(test_split, body, h36m):
    """The synthetic test split with S as the H36M datasets store it (regressed joints, pelvis-centred)
    and a gender per sample."""
    with np.load(test_split) as data:
        arrays = {k: data[k] for k in data.files}
    verts = body(torch.as_tensor(arrays["pose"]), torch.as_tensor(arrays["shape"])).vertices
    j17 = regressed_joints(verts, h36m, H36M_TO_J17).numpy()
    S = np.zeros((len(verts), 24, 4), np.float32)
    S[:, J24_TO_J17, :3] = j17
    S[:, J24_TO_J17, 3] = 1.0
    arrays["S"] = S
    arrays["gender"] = np.array(["m", "f", "m", "f", "f", "m"][: len(verts)])
    path = test_split.parent / "protocol_test.npz"  # beside the split: same image folder
    save_spin_npz(path, **arrays)
    return path


@pytest.mark.parametrize("protocol", ["h36m-p1", "h36m-p2", "mpi-inf-3dhp", "synthetic"])
def test_oracle_scores_zero_under_each_protocol(protocol_split, test_split, body, h36m, protocol):
    # "synthetic" scores against the model's own 24 GT joints, which the generated split stores as S.
    dataset = SpinImageDataset(test_split if protocol == "synthetic" else protocol_split, img_res=32)
    ann = dataset.annotations
    result = evaluate_protocol(_Oracle(ann.pose, ann.betas), body, dataset, protocol, h36m, batch_size=4)
    assert result.count == len(dataset)
    assert result.means["mpjpe"] < 0.05 and result.means["pa_mpjpe"] < 0.05
    if protocol == "mpi-inf-3dhp":
        assert result.means["pck"] == 1.0 and result.means["pa_auc"] > 0.96
    # NBF's measures under every protocol: the oracle's rotations are the truth's
    assert result.means["joint_rotation_error"] < 1e-3 and 0 <= result.means["pckh"] <= 1
    assert result.predictions["pose"].shape == (len(dataset), 72)
    assert result.predictions["betas"].shape == (len(dataset), 10)


def test_3dpw_uses_the_gendered_ground_truth(protocol_split, body, h36m, files):
    dataset = SpinImageDataset(protocol_split, img_res=32)
    ann = dataset.annotations
    genders = gendered_bodies(files, body)
    result = evaluate_protocol(_Oracle(ann.pose, ann.betas), body, dataset, "3dpw", h36m, genders,
                               batch_size=4)
    # Independently: neutral prediction vs the male/female mesh of the same parameters.
    pose, betas = torch.as_tensor(ann.pose), torch.as_tensor(ann.betas)
    pred = regressed_joints(body(pose, betas).vertices, h36m, PROTOCOLS["3dpw"].h36m_joints)
    expected = []
    for i, g in enumerate(ann.gender):
        gt_body = genders["male" if g == "m" else "female"]
        gt_verts = gt_body(pose[i:i + 1], betas[i:i + 1]).vertices
        gt = regressed_joints(gt_verts, h36m, PROTOCOLS["3dpw"].h36m_joints)
        expected.append(1000 * (pred[i] - gt[0]).norm(dim=-1).mean().item())
    np.testing.assert_allclose(result.per_sample["mpjpe"], expected, rtol=1e-4, atol=1e-3)
    assert min(expected) > 1.0  # the gendered bodies really differ from the neutral one


def test_missing_ground_truth_and_inputs_are_clear_errors(test_split, body, h36m, tmp_path):
    with np.load(test_split) as data:
        arrays = {k: data[k] for k in data.files if k not in ("S", "pose", "shape", "has_smpl")}
    path = test_split.parent / "no_3d.npz"
    save_spin_npz(path, **arrays)
    dataset = SpinImageDataset(path, img_res=32)
    oracle = _Oracle(np.zeros((6, 72), np.float32), np.zeros((6, 10), np.float32))
    for protocol in ("h36m-p1", "mpi-inf-3dhp", "3dpw", "synthetic"):
        with pytest.raises(UserError, match="no 3D ground truth|no ground-truth SMPL"):
            evaluate_protocol(oracle, body, dataset, protocol, h36m)
    with pytest.raises(UserError, match="Unknown protocol 'h36m'"):
        evaluate_protocol(oracle, body, dataset, "h36m", h36m)
    with pytest.raises(UserError, match="--joint-regressor-h36m"):
        load_h36m_regressor(None, "h36m-p1")
    bad = tmp_path / "reg.npy"
    np.save(bad, np.zeros((14, 6890)))
    with pytest.raises(UserError, match=r"expected finite \(17, 6890\)"):
        load_h36m_regressor(bad, "h36m-p1")


def test_3dpw_without_gender_is_a_clear_error(test_split, body, h36m):
    dataset = SpinImageDataset(test_split, img_res=32)
    assert dataset.annotations.gender is None
    with pytest.raises(UserError, match="no 'gender' array"):
        evaluate_protocol(_Oracle(None, None), body, dataset, "3dpw", h36m)
    assert math.isfinite(1.0)
