"""`fitting.mode=sync` does what original SPIN's train_step does, in the same order, on one batch:
forward → SMPLify from the detached prediction → keep the better of old and new fit per sample →
supervision (threshold, extreme betas, GT override) → losses → backward."""

import copy

import numpy as np
import torch

from fitting_workers.smplify import SMPLify
from spin.data.augment import augment_pose, canonicalise_cam_t, canonicalise_pose
from spin.geometry import axis_angle_to_matrix, matrix_to_axis_angle, perspective_projection
from spin.training.trainer import Trainer


def _spin_losses(rotmat, betas, cam, joints, batch, opt_pose, opt_betas, valid, w):
    """SPIN's own loss code (boolean indexing, nn.MSELoss), written out independently."""
    mse = torch.nn.MSELoss(reduction="none")
    cam_t = torch.stack([cam[:, 1], cam[:, 2], 2 * 5000.0 / (224 * cam[:, 0] + 1e-9)], dim=-1)
    kp2d = perspective_projection(joints, cam_t, 5000.0, torch.zeros(2)) / 112.0
    gt2d = batch["keypoints"]
    conf = gt2d[:, :, -1].unsqueeze(-1).clone()
    conf[:, :25] *= w.openpose_weight
    conf[:, 25:] *= w.gt_weight
    loss_kp = (conf * mse(kp2d, gt2d[:, :, :-1])).mean()
    has3d = batch["has_pose_3d"].bool()
    pred3d, gt3d = joints[:, 25:][has3d], batch["pose_3d"][has3d]
    c3d = gt3d[:, :, -1:]
    gt3d = gt3d[:, :, :-1] - (gt3d[:, 2, :3] + gt3d[:, 3, :3])[:, None] / 2
    pred3d = pred3d - (pred3d[:, 2] + pred3d[:, 3])[:, None] / 2
    loss_kp3d = (c3d * mse(pred3d, gt3d)).mean() if len(gt3d) else torch.tensor(0.0)
    crit = torch.nn.MSELoss()
    gt_rot = axis_angle_to_matrix(opt_pose.view(-1, 3)).view(-1, 24, 3, 3)
    if valid.any():
        loss_pose, loss_betas = crit(rotmat[valid], gt_rot[valid]), crit(betas[valid], opt_betas[valid])
    else:
        loss_pose = loss_betas = torch.tensor(0.0)
    loss_cam = (torch.exp(-cam[:, 0] * 10) ** 2).mean()
    total = (w.keypoint_weight * loss_kp + w.keypoint_weight * loss_kp3d + w.pose_weight * loss_pose
             + w.beta_weight * loss_betas + loss_cam)
    return 60 * total


def test_sync_step_equals_spins_order_of_operations(tmp_path, half_gt_data, body, body_files,
                                                     tiny_train_config):
    torch.manual_seed(0)
    config = tiny_train_config(half_gt_data, "sync", tmp_path / "run")
    with Trainer(config, tmp_path / "run") as trainer:
        batch = next(iter(trainer.loader))
        keys = list(batch["key"])
        # Old fits for the batch: an excellent one (SMPLify cannot beat it) and poor ones.
        rows = [int(k.split("/")[1]) for k in keys]
        ann = trainer.data.train.annotations
        cam0 = np.tile([0.0, 0.2, 40.0], (len(keys), 1))
        old_loss = np.array([1e-3] + [5e3] * (len(keys) - 1))
        trainer.store.put_if_better(keys, ann.pose[rows], ann.betas[rows], cam0, old_loss)
        before = {k: v.copy() for k, v in trainer.store.get(keys).items() if k != "source"}

        model = copy.deepcopy(trainer.model)
        rng = torch.random.get_rng_state()
        trainer.train_step(batch)
        trainer_grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        after = trainer.store.get(keys)

    # --- the reference: SPIN's train_step on the same batch, same dropout draws ---
    torch.random.set_rng_state(rng)
    model.train()
    out = model(batch["img"])
    joints = body.joints(out.rotmat, out.betas)
    cam_t = torch.stack([out.cam[:, 1], out.cam[:, 2], 2 * 5000.0 / (224 * out.cam[:, 0] + 1e-9)], dim=-1)
    pred_pose = matrix_to_axis_angle(out.rotmat.detach()).reshape(-1, 72)
    flip, rot, scale = batch["flip"], batch["rot"], batch["scale"]
    smplify = SMPLify(body, body_files.prior, config.fitting.smplify)
    new = smplify.fit(batch["keypoints_crop"], canonicalise_pose(pred_pose, flip, rot), out.betas.detach(),
                      canonicalise_cam_t(cam_t.detach(), joints.detach()[:, 8], flip, rot, scale))
    update = (new.loss < before["loss"]) & ~new.failed
    opt_pose = np.where(update[:, None], new.pose, before["pose"])
    opt_betas = np.where(update[:, None], new.betas, before["betas"])
    opt_loss = np.where(update, new.loss, before["loss"])
    assert update[1:].all() and not update[0]  # both branches exercised
    assert np.allclose(after["loss"], opt_loss) and np.allclose(after["pose"], opt_pose, atol=1e-6)

    opt_pose = torch.as_tensor(augment_pose(torch.as_tensor(opt_pose), flip, rot), dtype=torch.float32)
    opt_betas = torch.as_tensor(opt_betas, dtype=torch.float32)
    opt_betas[(opt_betas.abs() > 3).any(dim=-1)] = 0.0
    has_smpl = batch["has_smpl"].bool()
    opt_pose[has_smpl], opt_betas[has_smpl] = batch["pose"][has_smpl], batch["betas"][has_smpl]
    valid = torch.as_tensor(opt_loss < config.fitting.smplify.threshold) | has_smpl
    loss = _spin_losses(out.rotmat, out.betas, out.cam, joints, batch, opt_pose, opt_betas, valid,
                        config.losses)
    model.zero_grad()
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            # Same maths, summed in another order (masks vs boolean indexing): float noise only.
            reference = trainer_grads[name]
            difference = (param.grad - reference).norm() / reference.norm().clamp(min=1e-12)
            assert difference < 1e-4, (name, float(difference))
