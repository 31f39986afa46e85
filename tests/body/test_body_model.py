"""BodyModel: the fast joints path equals the full forward and smplx, differentiates, mirrors correctly."""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.body.pose_sampler import sample_body_pose
from spin.geometry import axis_angle_to_matrix
from spin.joints import FLIP_PERM_KEYPOINTS, JOINT_INDEX, flip_pose

MIRROR_X = torch.tensor([-1.0, 1.0, 1.0])


def _poses(n: int, seed: int, global_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    pose = np.zeros((n, 72), dtype=np.float32)
    pose[:, 3:] = sample_body_pose(n, rng)
    pose[:, :3] = global_scale * rng.normal(size=(n, 3))
    betas = rng.uniform(-3, 3, size=(n, 10)).astype(np.float32)
    return torch.as_tensor(pose), torch.as_tensor(betas)


def test_fast_path_equals_full_forward(body):
    pose, betas = _poses(32, seed=0)
    full = body(pose, betas)
    fast = body.joints(pose, betas)
    assert full.joints.shape == (32, 49, 3) and full.vertices.shape == (32, 6890, 3)
    assert (fast - full.joints).abs().max() < 1e-5
    # random (not sampler) poses too, and rotation-matrix input
    wild = 0.8 * torch.randn(8, 72, generator=torch.Generator().manual_seed(3))
    rot = axis_angle_to_matrix(wild.reshape(8, 24, 3))
    assert (body.joints(rot, betas[:8]) - body(wild, betas[:8]).joints).abs().max() < 1e-5
    assert (body.joints(wild.reshape(8, 24, 3), betas[:8]) - body.joints(rot, betas[:8])).abs().max() < 1e-5


def test_matches_plain_smplx(body, synth_files, model_dict):
    pose, betas = _poses(6, seed=1)
    smpl = smplx.SMPL(model_path=str(synth_files.model))
    ref = smpl(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3])
    ours = body(pose, betas)
    torch.testing.assert_close(ours.vertices, ref.vertices, atol=2e-6, rtol=0)
    torch.testing.assert_close(ours.smpl_joints, ref.joints[:, :24], atol=2e-6, rtol=0)
    extra = torch.einsum(
        "ev,bvc->bec", torch.as_tensor(model_dict["J_regressor_extra"], dtype=torch.float32), ref.vertices
    )
    model_joints = torch.cat([ref.joints, extra], dim=1)  # SPIN: smplx's 45 joints + 9 extra
    from spin.joints import MODEL_JOINT_INDEX

    assert (body.joints(pose, betas) - model_joints[:, MODEL_JOINT_INDEX]).abs().max() < 1e-5


def test_rest_pose_joints_come_from_the_regressor(body, model_dict):
    out = body(torch.zeros(1, 72), torch.zeros(1, 10))
    expected = model_dict["J_regressor"] @ model_dict["v_template"]
    np.testing.assert_allclose(out.smpl_joints[0].numpy(), expected, atol=1e-6)
    nose = model_dict["v_template"][332]
    np.testing.assert_allclose(out.joints[0, JOINT_INDEX["OP Nose"]].numpy(), nose, atol=1e-6)


def test_gradients_flow_and_agree(body):
    pose, betas = _poses(4, seed=2)
    grads = []
    for fn in (lambda p, b: body(p, b).joints, body.joints):
        p = pose.clone().requires_grad_()
        b = betas.clone().requires_grad_()
        fn(p, b).pow(2).sum().backward()
        assert torch.isfinite(p.grad).all() and torch.isfinite(b.grad).all()
        assert p.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
        grads.append((p.grad, b.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-4)
    # the zero pose is a valid point to differentiate at (no NaN from the rotation)
    zero = torch.zeros(2, 72, requires_grad=True)
    body.joints(zero, torch.zeros(2, 10)).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_fast_path_gradcheck_float64(synth_files):
    from spin.body import BodyModel

    body64 = BodyModel.from_files(synth_files, dtype=torch.float64)
    pose = 0.3 * torch.randn(2, 72, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    betas = torch.randn(2, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    pose.requires_grad_()
    betas.requires_grad_()
    # a few joints keep the check fast while touching the chain, vertex joints and extra rows
    sel = [0, 4, 19, 38, 43]
    assert torch.autograd.gradcheck(
        lambda p, b: body64.joints(p, b)[:, sel], (pose, betas), eps=1e-6, atol=1e-5, fast_mode=True
    )


def test_flipped_pose_gives_mirrored_joints(body):
    pose, betas = _poses(16, seed=5, global_scale=0.5)
    joints = body.joints(pose, betas)
    flipped = body.joints(flip_pose(pose), betas)
    mirrored = joints[:, FLIP_PERM_KEYPOINTS] * MIRROR_X
    assert (flipped - mirrored).abs().max() < 1e-5
    full = body(flip_pose(pose), betas).joints
    assert (full - mirrored).abs().max() < 1e-5


def test_flipped_pose_gives_mirrored_mesh(body, model_dict):
    pose, betas = _poses(4, seed=6)
    sym = torch.as_tensor(model_dict["vert_sym_idxs"])
    verts = body(pose, betas).vertices
    flipped = body(flip_pose(pose), betas).vertices
    assert (flipped - verts[:, sym] * MIRROR_X).abs().max() < 1e-5


def test_betas_broadcast_dtype_and_bad_shapes(body, synth_files):
    pose, betas = _poses(3, seed=7)
    one = betas[:1]
    torch.testing.assert_close(body.joints(pose, one), body.joints(pose, one.expand(3, -1)))
    with pytest.raises(ValueError, match="pose must be"):
        body.joints(torch.zeros(3, 69), betas)
    with pytest.raises(ValueError, match="betas must be"):
        body(pose, torch.zeros(3, 11))
    body64 = type(body).from_files(synth_files).to(torch.float64)
    out = body64.joints(pose.double(), betas.double())
    assert out.dtype == torch.float64
    assert (out.float() - body.joints(pose, betas)).abs().max() < 1e-5
    assert body.num_betas == 10 and body.faces.dtype == np.int64 and body.lbs_weights.shape == (6890, 24)


def test_empty_batch_gives_empty_outputs(body):
    pose, betas = torch.zeros(0, 72), torch.zeros(0, 10)
    assert body.joints(pose, betas).shape == (0, 49, 3)
    out = body(pose, betas)
    assert out.vertices.shape == (0, 6890, 3) and out.joints.shape == (0, 49, 3)
    assert sample_body_pose(0, np.random.default_rng(0)).shape == (0, 69)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), pose_scale=st.floats(0.0, 1.5), betas_scale=st.floats(0.0, 3.0))
def test_fast_path_equals_full_forward_with_gradients_property(body, seed, pose_scale, betas_scale):
    gen = torch.Generator().manual_seed(seed)
    pose = (pose_scale * torch.randn(3, 72, generator=gen)).requires_grad_()
    betas = (betas_scale * torch.randn(3, 10, generator=gen)).requires_grad_()
    weight = torch.randn(3, 49, 3, generator=gen)
    fast = body.joints(pose, betas)
    full = body(pose, betas).joints
    assert (fast - full).abs().max() < 1e-5  # metres
    g_fast = torch.autograd.grad((fast * weight).sum(), (pose, betas))
    g_full = torch.autograd.grad((full * weight).sum(), (pose, betas))
    for a, b in zip(g_fast, g_full, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
