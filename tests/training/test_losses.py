"""SPIN's losses: values on hand-made inputs, masks, and equality with SPIN's boolean-index form."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spin.geometry import axis_angle_to_matrix
from spin.losses import (
    LossConfig,
    camera_loss,
    keypoint_2d_loss,
    keypoint_3d_loss,
    smpl_param_losses,
    total_loss,
    vertex_loss,
)

torch.manual_seed(0)


def test_keypoint_2d_loss_weights_openpose_and_gt_separately():
    pred = torch.zeros(2, 49, 2)
    target = torch.zeros(2, 49, 3)
    target[..., :2] = 1.0  # squared error 1 per coordinate
    target[..., 2] = 1.0
    only_gt = keypoint_2d_loss(pred, target, openpose_weight=0.0, gt_weight=1.0)
    only_op = keypoint_2d_loss(pred, target, openpose_weight=1.0, gt_weight=0.0)
    assert torch.isclose(only_gt, torch.tensor(24 / 49))
    assert torch.isclose(only_op, torch.tensor(25 / 49))
    target[:, 30, 2] = 0.0  # an unconfident joint does not count
    assert torch.isclose(keypoint_2d_loss(pred, target, 0.0, 1.0), torch.tensor(23 / 49))


def test_keypoint_3d_loss_is_pelvis_aligned_and_masked():
    pred = torch.randn(3, 49, 3)
    target = torch.cat([pred[:, 25:] + torch.tensor([1.0, -2.0, 3.0]), torch.ones(3, 24, 1)], -1)
    assert keypoint_3d_loss(pred, target, torch.tensor([True, True, True])) < 1e-10  # translation-invariant
    target[0, 5, :3] += 1.0
    assert keypoint_3d_loss(pred, target, torch.tensor([False, True, True])) < 1e-10  # sample 0 masked out
    assert keypoint_3d_loss(pred, target, torch.tensor([True, False, False])) > 0
    assert keypoint_3d_loss(pred, target, torch.zeros(3, dtype=torch.bool)) == 0


def _spin_reference(pred_rotmat, pred_betas, gt_pose, gt_betas, valid):
    """SPIN's own formulation (boolean indexing, nn.MSELoss)."""
    mse = torch.nn.MSELoss()
    gt_rotmat = axis_angle_to_matrix(gt_pose.view(-1, 3)).view(-1, 24, 3, 3)
    return mse(pred_rotmat[valid], gt_rotmat[valid]), mse(pred_betas[valid], gt_betas[valid])


def test_smpl_param_losses_equal_spin_boolean_indexing():
    pred_rotmat = axis_angle_to_matrix(0.3 * torch.randn(5, 24, 3))
    pred_betas, gt_betas, gt_pose = torch.randn(5, 10), torch.randn(5, 10), 0.3 * torch.randn(5, 72)
    valid = torch.tensor([True, False, True, True, False])
    pose_loss, betas_loss = smpl_param_losses(pred_rotmat, pred_betas, gt_pose, gt_betas, valid)
    ref_pose, ref_betas = _spin_reference(pred_rotmat, pred_betas, gt_pose, gt_betas, valid)
    assert torch.allclose(pose_loss, ref_pose, atol=1e-6) and torch.allclose(betas_loss, ref_betas, atol=1e-6)
    none = torch.zeros(5, dtype=torch.bool)
    assert all(term == 0 for term in smpl_param_losses(pred_rotmat, pred_betas, gt_pose, gt_betas, none))


def test_vertex_loss_is_l1_over_valid():
    pred, target = torch.zeros(2, 10, 3), torch.ones(2, 10, 3)
    target[1] = 5.0
    assert torch.isclose(vertex_loss(pred, target, torch.tensor([True, False])), torch.tensor(1.0))


def test_camera_loss_penalises_negative_scale():
    assert camera_loss(torch.tensor([[1.0, 0, 0]])) < 1e-8
    assert camera_loss(torch.tensor([[-0.2, 0, 0]])) > 50


def test_total_loss_is_spin_weighted_sum():
    terms = {k: torch.tensor(v) for k, v in
             dict(keypoints_2d=1.0, keypoints_3d=2.0, pose=3.0, betas=4.0, camera=5.0, vertices=6.0).items()}
    config = LossConfig(vertex_weight=0.5)
    expected = 60 * (5 * 3 + 1 * 3 + 0.001 * 4 + 5 + 0.5 * 6)
    assert torch.isclose(total_loss(terms, config), torch.tensor(expected))


def test_losses_have_gradients():
    pred_rotmat = axis_angle_to_matrix(0.3 * torch.randn(2, 24, 3)).requires_grad_()
    pose_loss, _ = smpl_param_losses(pred_rotmat, torch.zeros(2, 10), torch.zeros(2, 72), torch.zeros(2, 10),
                                     torch.tensor([True, False]))
    pose_loss.backward()
    assert pred_rotmat.grad[0].abs().sum() > 0 and pred_rotmat.grad[1].abs().sum() == 0


SWITCHED_TERMS = {"joints_2d": ("keypoints_2d",), "joints_3d": ("keypoints_3d",), "latent": ("pose", "betas")}


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(0.0, 100.0), min_size=6, max_size=6),
       switches=st.fixed_dictionaries({k: st.booleans() for k in SWITCHED_TERMS}))
def test_each_supervision_switch_removes_exactly_its_terms(values, switches):
    """NBF's loss ablation: turning a switch off changes the total by exactly its own weighted terms;
    changing every other term's value leaves the difference as it was."""
    names = ("keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "vertices")
    terms = {k: torch.tensor(v, dtype=torch.float64) for k, v in zip(names, values, strict=True)}
    config = LossConfig(vertex_weight=0.5, **switches)
    weights = {"keypoints_2d": config.keypoint_weight, "keypoints_3d": config.keypoint_weight,
               "pose": config.pose_weight, "betas": config.beta_weight}
    for switch, own in SWITCHED_TERMS.items():
        on = total_loss(terms, LossConfig(vertex_weight=0.5, **{**switches, switch: True}))
        off = total_loss(terms, LossConfig(vertex_weight=0.5, **{**switches, switch: False}))
        expected = config.scale * sum(weights[k] * terms[k] for k in own)
        assert torch.isclose(on - off, expected, rtol=1e-9, atol=1e-9)
        others = {k: (v + 7.0 if k not in own else v) for k, v in terms.items()}
        on2 = total_loss(others, LossConfig(vertex_weight=0.5, **{**switches, switch: True}))
        off2 = total_loss(others, LossConfig(vertex_weight=0.5, **{**switches, switch: False}))
        assert torch.isclose(on2 - off2, on - off, rtol=1e-9, atol=1e-6)


def test_supervision_switches_default_to_spin():
    config = LossConfig()
    assert config.latent and config.joints_3d and config.joints_2d
