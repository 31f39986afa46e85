"""The adversarial prior on the real regressor's output: its loss trains the encoder, never D."""

from __future__ import annotations

import numpy as np
import torch

from spin.adversarial import AdversarialConfig, AdversarialPrior
from spin.data.pose_bank import synthetic_pose_bank
from spin.geometry import matrix_to_rot6d
from spin.models import ModelConfig, build_regressor


def test_encoder_loss_backpropagates_into_the_regressor_only():
    torch.manual_seed(0)
    mean = {"pose": matrix_to_rot6d(torch.eye(3).expand(24, 3, 3)).reshape(-1).numpy(),
            "shape": np.zeros(10, np.float32), "cam": np.array([0.9, 0.0, 0.0], np.float32)}
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=32, hidden=32, iterations=2), mean)
    prior = AdversarialPrior(AdversarialConfig(enabled=True), bank=synthetic_pose_bank(64, seed=1))
    out = model(torch.randn(4, 3, 32, 32))
    d_before = [p.detach().clone() for p in prior.discriminator.parameters()]
    loss, metrics = prior.step([out.rotmat], [out.betas])
    d_after_step = [p.detach().clone() for p in prior.discriminator.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(d_before, d_after_step, strict=True))  # D was updated
    d_grads = [p.grad.clone() for p in prior.discriminator.parameters()]
    loss.backward()
    assert model.dec_pose.weight.grad.abs().sum() > 0 and model.dec_betas.weight.grad.abs().sum() > 0
    assert all(torch.equal(p.grad, g) for p, g in zip(prior.discriminator.parameters(), d_grads, strict=True))
    assert torch.isfinite(loss) and float(metrics["adv/e_loss"]) > 0
