"""The synthetic stand-in: SMPL layout, a plausible closed body, keypoint vertices in place, symmetric."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import smplx
import torch
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from spin.body.files import load_mean_params
from spin.body.gmm import load_gmm
from spin.body.pose_sampler import sample_body_pose
from spin.body.synthetic import build_model_arrays
from spin.geometry import matrix_to_axis_angle, rot6d_to_matrix
from spin.joints import FLIP_PERM_SMPL, SMPL_PARENTS

IDS = SMPLX_VERTEX_IDS["smplh"]
SMPL_KEYS = {
    "v_template": (6890, 3),
    "shapedirs": (6890, 3, 10),
    "posedirs": (6890, 3, 207),
    "J_regressor": (24, 6890),
    "weights": (6890, 24),
    "kintree_table": (2, 24),
    "J_regressor_extra": (9, 6890),
}


def test_layout_and_plain_smplx(model_dict, synth_files):
    for key, shape in SMPL_KEYS.items():
        assert model_dict[key].shape == shape, key
    assert model_dict["f"].ndim == 2 and model_dict["f"].shape[1] == 3
    np.testing.assert_array_equal(model_dict["kintree_table"][0, 1:], SMPL_PARENTS[1:])
    assert "not SMPL" in model_dict["spin_synthetic"]
    smpl = smplx.SMPL(model_path=str(synth_files.model))
    out = smpl(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
    assert out.vertices.shape == (1, 6890, 3) and out.joints.shape == (1, 45, 3)
    np.testing.assert_array_equal(np.load(synth_files.joint_regressor_extra), model_dict["J_regressor_extra"])


def test_deterministic_per_seed(model_dict):
    again = build_model_arrays(0)
    for key in ("v_template", "shapedirs", "weights", "J_regressor", "J_regressor_extra", "f"):
        np.testing.assert_array_equal(again[key], model_dict[key])
    other = build_model_arrays(1)
    assert not np.allclose(other["v_template"], model_dict["v_template"])
    assert other["v_template"].shape == (6890, 3)


def test_t_pose_proportions(model_dict):
    v = model_dict["v_template"]
    joints = model_dict["J_regressor"] @ v
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.85
    assert np.linalg.norm(joints[0]) < 0.03  # pelvis near the origin
    # y up: head above neck above pelvis above knees above ankles; left side at +x
    assert joints[15, 1] > joints[12, 1] > joints[0, 1] > joints[4, 1] > joints[7, 1]
    assert (
        joints[1, 0] > 0 > joints[2, 0]
        and joints[16, 0] > 0.1
        and joints[20, 0] > joints[18, 0] > joints[16, 0]
    )
    # every joint is inside the body's extent and children are away from parents
    bone = np.linalg.norm(joints[1:] - joints[np.array(SMPL_PARENTS[1:])], axis=1)
    assert bone.min() > 0.03 and bone.max() < 0.5


def test_surface_is_closed_and_outward(model_dict):
    faces = model_dict["f"]
    assert len(np.unique(faces)) == 6890  # every vertex is on the surface
    directed = Counter(map(tuple, np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])))
    assert max(directed.values()) == 1  # consistent orientation
    assert all((b, a) in directed for a, b in directed)  # closed: every edge has its twin
    tri = model_dict["v_template"][faces]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
    assert 0.04 < volume < 0.12  # m³, outward normals (a 70 kg person is about 0.07 m³)


def test_keypoint_vertices_are_where_their_names_say(model_dict):
    v = model_dict["v_template"]
    joints = model_dict["J_regressor"] @ v
    head, neck = joints[15], joints[12]
    nose, reye, leye, rear, lear = (v[IDS[k]] for k in ("nose", "reye", "leye", "rear", "lear"))
    assert abs(nose[0]) < 1e-9 and nose[1] > head[1] and nose[2] > head[2] + 0.08  # front of the face
    assert leye[0] > 0.01 and reye[0] < -0.01 and leye[1] > nose[1] and leye[2] > head[2] + 0.05
    assert lear[0] > 0.06 and rear[0] < -0.06 and abs(lear[2] - head[2]) < 0.05
    for side, sign in (("L", 1), ("R", -1)):
        big, small, heel = (v[IDS[side + k]] for k in ("BigToe", "SmallToe", "Heel"))
        ankle = joints[7 if side == "L" else 8]
        assert sign * big[0] > 0 and big[2] > ankle[2] + 0.12 and heel[2] < ankle[2] - 0.03
        assert sign * small[0] > sign * big[0]  # small toe is lateral
        assert big[1] < ankle[1] and heel[1] < ankle[1]
    for hand, sign, wrist in (("l", 1, joints[20]), ("r", -1, joints[21])):
        tips = np.array([v[IDS[hand + f]] for f in ("thumb", "index", "middle", "ring", "pinky")])
        assert np.all(sign * (tips[:, 0] - wrist[0]) > 0.05)
        assert np.all(np.diff(tips[1:, 2]) < 0)  # index -> pinky from front to back
    assert neck[1] < nose[1]


def test_weights_regressors_and_symmetry(model_dict):
    w = model_dict["weights"]
    assert w.min() >= 0 and np.allclose(w.sum(1), 1)
    for key in ("J_regressor", "J_regressor_extra"):
        reg = model_dict[key]
        assert reg.min() >= 0 and np.allclose(reg.sum(1), 1)
    assert (model_dict["J_regressor_extra"] != 0).sum(1).max() < 200  # sparse rows
    sym = model_dict["vert_sym_idxs"]
    np.testing.assert_array_equal(sym[sym], np.arange(6890))
    mirror = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(model_dict["v_template"][sym] * mirror, model_dict["v_template"], atol=1e-12)
    np.testing.assert_allclose(
        model_dict["shapedirs"][sym] * mirror[:, None], model_dict["shapedirs"], atol=1e-12
    )
    np.testing.assert_allclose(w[sym][:, FLIP_PERM_SMPL], w, atol=1e-12)
    np.testing.assert_allclose(model_dict["J_regressor"][FLIP_PERM_SMPL][:, sym], model_dict["J_regressor"])
    extra_flip = [1, 0, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_allclose(
        model_dict["J_regressor_extra"][extra_flip][:, sym], model_dict["J_regressor_extra"]
    )
    # small but non-zero pose correctives
    pose_correctives = np.abs(model_dict["posedirs"])
    assert 0 < pose_correctives.max() < 0.1


def test_shape_space(body):
    def height(beta0: float) -> float:
        betas = torch.zeros(1, 10)
        betas[0, 0] = beta0
        v = body(torch.zeros(1, 72), betas).vertices[0]
        return float(v[:, 1].max() - v[:, 1].min())

    base = height(0.0)
    assert height(3.0) / base == pytest.approx(1.15, abs=0.02)
    assert height(-3.0) / base == pytest.approx(0.85, abs=0.02)
    rest = body(torch.zeros(1, 72), torch.zeros(1, 10)).vertices
    rng = np.random.default_rng(0)
    for k in range(1, 10):  # every other direction changes the body, smoothly and moderately
        betas = torch.zeros(2, 10)
        betas[0, k], betas[1, k] = 3.0, -3.0
        verts = body(torch.zeros(2, 72), betas).vertices
        change = (verts - rest).norm(dim=-1).max(dim=-1).values
        assert torch.all(change > 0.005) and torch.all(change < 0.2), (k, change)
    # random shapes within [-3, 3] stay human-sized
    betas = torch.as_tensor(rng.uniform(-3, 3, (16, 10)), dtype=torch.float32)
    verts = body(torch.zeros(16, 72), betas).vertices
    heights = verts[..., 1].amax(1) - verts[..., 1].amin(1)
    assert heights.min() > 1.3 and heights.max() < 2.2


def test_mean_params_and_prior(synth_files):
    mean = load_mean_params(synth_files.mean_params)
    assert (
        mean["pose"].shape == (144,) and np.all(mean["shape"] == 0) and mean["cam"][0] == pytest.approx(0.9)
    )
    aa = matrix_to_axis_angle(rot6d_to_matrix(torch.as_tensor(mean["pose"]).reshape(24, 6)))
    np.testing.assert_allclose(aa[0].abs().numpy(), [np.pi, 0, 0], atol=1e-4)  # upright in SPIN's camera
    assert aa[16, 2] < -0.3 and aa[17, 2] > 0.3  # arms a bit down

    gmm = load_gmm(synth_files.prior)
    assert gmm.means.shape == (8, 69) and gmm.covars.shape == (8, 69, 69) and gmm.weights.shape == (8,)
    assert np.isclose(gmm.weights.sum(), 1) and np.all(np.linalg.eigvalsh(gmm.covars) > 0)
    rng = np.random.default_rng(123)
    plausible = gmm.log_likelihood(sample_body_pose(200, rng))
    garbage = gmm.log_likelihood(rng.uniform(-1.5, 1.5, (200, 69)))
    assert np.median(plausible) > np.median(garbage) + 100
