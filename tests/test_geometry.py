"""spin.geometry: rotations against scipy, round trips, projection and SPIN's camera estimate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from spin.geometry import (
    axis_angle_to_matrix,
    estimate_cam_t,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    perspective_projection,
    rot6d_to_matrix,
    weak_perspective_to_cam_t,
)

finite = st.floats(-3.0, 3.0, allow_nan=False, width=64)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, (16, 3), elements=finite))
def test_axis_angle_matches_scipy_and_round_trips(aa):
    aa[0] = 0.0
    aa[1] = [np.pi - 1e-7, 0.0, 0.0]  # near 180°, the hard case for the inverse
    mats = axis_angle_to_matrix(torch.as_tensor(aa))
    np.testing.assert_allclose(mats.numpy(), Rotation.from_rotvec(aa).as_matrix(), atol=1e-10)
    back = matrix_to_axis_angle(mats)
    assert back.norm(dim=-1).max() <= np.pi + 1e-6
    np.testing.assert_allclose(axis_angle_to_matrix(back).numpy(), mats.numpy(), atol=1e-6)


def test_small_and_zero_angles_have_finite_gradients():
    aa = torch.tensor(
        [[0.0, 0.0, 0.0], [1e-5, -2e-5, 3e-6], [0.0, 1e-9, 0.0]], dtype=torch.float64, requires_grad=True
    )
    mats = axis_angle_to_matrix(aa)
    np.testing.assert_allclose(
        mats.detach().numpy(), Rotation.from_rotvec(aa.detach().numpy()).as_matrix(), atol=1e-12
    )
    mats.sum().backward()
    assert torch.isfinite(aa.grad).all()
    back = matrix_to_axis_angle(mats.detach())
    np.testing.assert_allclose(back.numpy(), aa.detach().numpy(), atol=1e-9)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (aa.detach().clone().requires_grad_(),))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, (8, 6), elements=finite))
def test_rot6d_is_gram_schmidt_and_round_trips(x):
    x[:, :] += np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # keep the two columns apart
    if np.any(np.abs(np.cross(x[:, [0, 2, 4]], x[:, [1, 3, 5]])).sum(1) < 1e-3):
        return
    mats = rot6d_to_matrix(torch.as_tensor(x))
    eye = torch.eye(3, dtype=torch.float64).expand(8, 3, 3)
    torch.testing.assert_close(mats @ mats.transpose(1, 2), eye)
    assert torch.allclose(torch.linalg.det(mats), torch.ones(8, dtype=torch.float64))
    a1 = x[:, [0, 2, 4]]  # SPIN reshapes to (3, 2): the first column is numbers 0, 2, 4
    np.testing.assert_allclose(
        mats[:, :, 0].numpy(), a1 / np.linalg.norm(a1, axis=1, keepdims=True), atol=1e-12
    )
    torch.testing.assert_close(rot6d_to_matrix(matrix_to_rot6d(mats)), mats)


def test_perspective_projection_known_values():
    points = torch.tensor([[[0.0, 0.0, 0.0], [0.1, -0.2, 1.0]]])
    cam_t = torch.tensor([[0.0, 0.0, 10.0]])
    out = perspective_projection(points, cam_t, 5000.0, torch.tensor([112.0, 112.0]))
    torch.testing.assert_close(out, torch.tensor([[[112.0, 112.0], [112.0 + 500 / 11, 112.0 - 1000 / 11]]]))
    per_sample = perspective_projection(
        points.expand(2, 2, 3),
        cam_t.expand(2, 3),
        torch.tensor([5000.0, 1000.0]),
        torch.tensor([[112.0, 112.0], [0.0, 0.0]]),
    )
    torch.testing.assert_close(per_sample[0], out[0])
    torch.testing.assert_close(per_sample[1, 1], torch.tensor([100 / 11, -200 / 11]))


def _keypoints(joints, cam_t, conf):
    kp = perspective_projection(joints, cam_t, 5000.0, torch.tensor([112.0, 112.0]))
    return torch.cat([kp, conf[..., None]], dim=-1)


def test_estimate_cam_t_recovers_translation():
    gen = torch.Generator().manual_seed(0)
    joints = 0.4 * torch.randn(5, 24, 3, dtype=torch.float64, generator=gen)
    cam_t = torch.tensor(
        [[0.1, 0.2, 20.0], [-0.3, 0.1, 40.0], [0.0, 0.0, 12.0], [0.2, -0.2, 60.0], [0.0, 0.1, 25.0]],
        dtype=torch.float64,
    )
    conf = torch.ones(5, 24, dtype=torch.float64)
    kp = _keypoints(joints, cam_t, conf)
    kp[4, :3, :2] += 80.0  # outliers ...
    conf[4, :3] = 0.0  # ... with zero confidence are ignored
    kp[4, :, 2] = conf[4]
    torch.testing.assert_close(estimate_cam_t(joints, kp), cam_t, atol=1e-6, rtol=1e-8)
    est32 = estimate_cam_t(joints.float(), kp.float())
    assert est32.dtype == torch.float32 and torch.allclose(est32, cam_t.float(), rtol=1e-3, atol=1e-3)


def test_estimate_cam_t_without_confident_joints_gives_the_mean_camera():
    joints = torch.randn(2, 24, 3)
    kp = torch.zeros(2, 24, 3)
    out = estimate_cam_t(joints, kp)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 2 * 5000 / (0.9 * 224)]] * 2))


def test_estimate_cam_t_is_differentiable():
    joints = (0.3 * torch.randn(2, 24, 3, dtype=torch.float64)).requires_grad_()
    kp = _keypoints(
        joints.detach(),
        torch.tensor([[0.0, 0.0, 20.0]] * 2, dtype=torch.float64),
        torch.ones(2, 24, dtype=torch.float64),
    )
    estimate_cam_t(joints, kp).sum().backward()
    assert torch.isfinite(joints.grad).all() and joints.grad.abs().sum() > 0


def test_weak_perspective_matches_projection_for_shallow_bodies():
    pred_cam = torch.tensor([[0.9, 0.05, -0.1], [1.3, 0.0, 0.2]])
    cam_t = weak_perspective_to_cam_t(pred_cam, 5000.0, 224)
    torch.testing.assert_close(cam_t[:, 2], 2 * 5000.0 / (224 * pred_cam[:, 0]))
    points = torch.tensor([[[0.3, -0.4, 0.0]], [[-0.2, 0.5, 0.0]]])
    pix = perspective_projection(points, cam_t, 5000.0, torch.tensor([112.0, 112.0]))
    normalised = (pix - 112.0) / 112.0  # SPIN's [-1, 1] keypoint convention
    expected = pred_cam[:, None, :1] * (points[..., :2] + pred_cam[:, None, 1:])
    torch.testing.assert_close(normalised, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
def test_batch_shapes(shape):
    aa = torch.randn(*shape)
    assert axis_angle_to_matrix(aa).shape == (*shape[:-1], 3, 3)
    assert matrix_to_axis_angle(axis_angle_to_matrix(aa)).shape == aa.shape
    assert matrix_to_rot6d(axis_angle_to_matrix(aa)).shape == (*shape[:-1], 6)
