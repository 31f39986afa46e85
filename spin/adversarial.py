"""HMR's adversarial prior as one trainer component: discriminator, its optimiser, its real-body bank.

Least-squares GAN losses as HMR (Kanazawa et al. 2018), summed over the K + 2 = 25 judgements and
averaged over samples:
    encoder        E_fake[ Σ_k (D_k(Θ_pred) − 1)² ]
    discriminator  E_real[ Σ_k (D_k(Θ_real) − 1)² ] + E_fake[ Σ_k D_k(Θ_pred)² ]
where every IEF iteration's prediction is a fake sample (HMR applies the prior at each iteration).

`AdversarialPrior.step` first updates the discriminator on a bank batch against the detached
predictions, then returns the encoder's loss under the updated discriminator with the
discriminator's parameters excluded from the graph: the trainer's `backward()` on its total then
reaches only the encoder, and nothing the trainer saved for backward is modified in place later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from spin.data.pose_bank import PoseBank, build_pose_bank
from spin.errors import UserError
from spin.geometry import axis_angle_to_matrix
from spin.models.discriminator import NUM_BODY_JOINTS, HMRDiscriminator, body_rotmats


@dataclass
class AdversarialConfig:
    """HMR's adversarial prior (YAML `adversarial:`). Off by default (SPIN has none).

    weight: multiplies the encoder's adversarial loss, which the trainer adds to its total after
    `losses.scale` (HMR: keypoints ×60, adversarial ×1). lr / weight_decay: the discriminator's own
    Adam. HMR trains it 10× faster than the encoder (1e-4 against 1e-5); the encoder here learns at
    `optim.lr` 3e-4, so 3e-3 keeps that ratio (trained alone against fixed fakes for 200 steps, it
    reaches 0.52 accuracy at 1e-4 and 0.88 at 3e-3). bank: an `.npz` of SMPL parameters (`pose`
    (N,72), `shape` (N,10)), or null for `bank_size` bodies generated from the synthetic
    distribution. real_batch: bank bodies per step, 0 = the training batch size. seed: the bank's
    generator (generated bank and sampler).
    """

    enabled: bool = False
    weight: float = 1.0
    lr: float = 3e-3
    weight_decay: float = 1e-4
    bank: str | None = None
    bank_size: int = 20000
    real_batch: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [(self.weight >= 0, "weight", "0 or more"), (self.lr > 0, "lr", "above 0"),
                  (self.weight_decay >= 0, "weight_decay", "0 or more"),
                  (self.bank_size >= 1, "bank_size", "1 or more"),
                  (self.real_batch >= 0, "real_batch", "0 or more")]
        for ok, key, fix in checks:
            if not ok:
                raise UserError(f"Config key adversarial.{key} has an invalid value; set it to {fix}.")


def encoder_adversarial_loss(fake: torch.Tensor) -> torch.Tensor:
    """HMR's encoder term: mean over samples of Σ_k (D_k − 1)², judgements fake (N,25)."""
    return ((fake - 1.0) ** 2).sum(dim=1).mean()


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """HMR's discriminator term: E_real Σ_k (D_k − 1)² + E_fake Σ_k D_k², judgements (N,25) / (M,25)."""
    return ((real - 1.0) ** 2).sum(dim=1).mean() + (fake ** 2).sum(dim=1).mean()


def _stack_iterations(rotmats: Sequence[torch.Tensor] | torch.Tensor,
                      betas: Sequence[torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-iteration predictions (T × (B,24|23,3,3), T × (B,10)) → fakes (T·B,23,3,3), (T·B,10) float32, T."""
    rot = torch.stack(list(rotmats)) if not isinstance(rotmats, torch.Tensor) else rotmats
    bet = torch.stack(list(betas)) if not isinstance(betas, torch.Tensor) else betas
    if rot.dim() == 4:  # a single iteration given as (B,24,3,3)
        rot, bet = rot.unsqueeze(0), bet.unsqueeze(0)
    if rot.shape[:2] != bet.shape[:2]:
        raise ValueError(f"rotations {tuple(rot.shape)} and betas {tuple(bet.shape)} differ in "
                         "iterations or batch")
    rot = body_rotmats(rot).float()
    return rot.reshape(-1, NUM_BODY_JOINTS, 3, 3), bet.float().reshape(-1, bet.shape[-1]), rot.shape[0]


class AdversarialPrior:
    """The discriminator, its Adam optimiser, the real-body bank and the encoder loss weight."""

    def __init__(self, config: AdversarialConfig, device: torch.device | str = "cpu",
                 bank: PoseBank | None = None) -> None:
        self.config = config
        self.device = torch.device(device)
        self.bank = bank if bank is not None else build_pose_bank(config.bank, config.bank_size, config.seed)
        self.discriminator = HMRDiscriminator().to(self.device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr,
                                          weight_decay=config.weight_decay)
        if _distributed():  # every rank starts from rank 0's discriminator
            for p in self.discriminator.parameters():
                dist.broadcast(p.data, src=0)

    def real_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n bank bodies as body rotations (n,23,3,3) and betas (n,10) on the prior's device (other
        bodies on each data-parallel rank)."""
        rank, world = (dist.get_rank(), dist.get_world_size()) if _distributed() else (0, 1)
        pose, betas = self.bank.sample(n, self.device, rank, world)
        return body_rotmats(axis_angle_to_matrix(pose.reshape(n, -1, 3))), betas

    def step(self, pred_rotmats_per_iter: Sequence[torch.Tensor] | torch.Tensor,
             pred_betas_per_iter: Sequence[torch.Tensor] | torch.Tensor,
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One discriminator update, then the weighted encoder loss (a graph to the predictions only).

        pred_rotmats_per_iter: T tensors (B,24,3,3) (or (B,23,3,3), or one stacked (T,B,…)), one per
        IEF iteration; pred_betas_per_iter: T tensors (B,10). Returns (weight · encoder loss, metrics)
        with detached 0-d tensors `adv/d_loss`, `adv/e_loss` (unweighted), `adv/d_real_acc` (share of
        real judgements > 0.5), `adv/d_fake_acc` (share of fake judgements < 0.5), `adv/d_acc`.
        """
        fake_rot, fake_betas, iterations = _stack_iterations(pred_rotmats_per_iter, pred_betas_per_iter)
        batch = self.config.real_batch or fake_rot.shape[0] // iterations
        real_rot, real_betas = self.real_batch(batch)
        d = self.discriminator
        # The discriminator always runs in float32, whatever autocast the trainer's step is under.
        with torch.autocast(device_type=self.device.type, enabled=False):
            d.train()
            real = d(real_rot, real_betas)
            fake_detached = d(fake_rot.detach(), fake_betas.detach())
            d_loss = discriminator_loss(real, fake_detached)
            self.optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            if _distributed():
                _average_gradients(self.discriminator)
            self.optimizer.step()
            for p in d.parameters():
                p.requires_grad_(False)
            try:
                fake = d(fake_rot, fake_betas)
            finally:
                for p in d.parameters():
                    p.requires_grad_(True)
            e_loss = encoder_adversarial_loss(fake)
        real_acc = (real.detach() > 0.5).float().mean()
        fake_acc = (fake_detached.detach() < 0.5).float().mean()
        metrics = {"adv/d_loss": d_loss.detach(), "adv/e_loss": e_loss.detach(),
                   "adv/d_real_acc": real_acc, "adv/d_fake_acc": fake_acc,
                   "adv/d_acc": 0.5 * (real_acc + fake_acc)}
        return self.config.weight * e_loss, metrics

    def state_dict(self) -> dict[str, Any]:
        """Discriminator weights, optimiser state and the bank sampler's generator, for exact resume."""
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "bank": self.bank.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything `state_dict` saved."""
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.bank.load_state_dict(state["bank"])


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _average_gradients(module: torch.nn.Module) -> None:
    """All-reduce the discriminator's gradients to their mean over ranks (as DDP does for the encoder)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
