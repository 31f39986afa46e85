"""Batched Adam with a per-sample iteration budget: B independent problems in lock-step, sync-free.

Adam is elementwise, so on a sum of independent per-sample losses it is exactly torch.optim.Adam
(same moments, same bias correction, eps 1e-8); what this adds is a per-sample budget: sample b
takes only its first `budget[b]` steps and then stays where it is. The loop length is fixed before
it starts, so there is no host read of device values and no data-dependent branch per iteration.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Objective = Callable[[torch.Tensor], torch.Tensor]


def minimize_adam(fn: Objective, x0: torch.Tensor, iters: int, lr: float,
                  budget: torch.Tensor | None = None, betas: tuple[float, float] = (0.9, 0.999),
                  eps: float = 1e-8, final_lr_fraction: float = 1.0) -> torch.Tensor:
    """Minimise each sample's loss `fn(x) (B,)` over its row of x `(B, P)` with Adam; returns x.

    budget `(B,)` int: steps sample b takes (at most `iters`; None = `iters` for all).
    final_lr_fraction < 1 anneals the rate from lr to lr·final_lr_fraction (cosine) over the iters.
    """
    x = x0.detach().clone()
    if iters <= 0 or x.shape[0] == 0:
        return x
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    beta1, beta2 = betas
    for t in range(1, iters + 1):
        x.requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(fn(x).sum(), x)
        x = x.detach()
        m = m.mul(beta1).add_(g, alpha=1 - beta1)
        v = v.mul(beta2).addcmul_(g, g, value=1 - beta2)
        denom = (v / (1 - beta2**t)).sqrt_().add_(eps)
        anneal = 0.5 * (1 + math.cos(math.pi * (t - 1) / iters))  # 1 at the first step, -> 0
        rate = lr * (final_lr_fraction + (1 - final_lr_fraction) * anneal)
        update = (rate / (1 - beta1**t)) * m / denom
        if budget is not None:
            update = update * (budget >= t).to(x.dtype)[:, None]
        x = x - update
    return x
