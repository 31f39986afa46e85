"""The learning-rate schedule from torch's schedulers: linear warm-up, then constant or cosine decay.

One `scheduler.step()` per optimiser step. Its `state_dict` (saved in `last.pt`) restores it
exactly on `--resume`.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from spin.config import OptimConfig


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int) -> LRScheduler:
    """Warm-up over `optim.warmup_steps` steps (lr · (k+1)/warmup at step k), then for
    `optim.schedule == "cosine"` a cosine decay to lr · `optim.min_lr_factor` at `total_steps`;
    otherwise the base lr from then on."""
    warmup = max(0, int(optim.warmup_steps))
    if optim.schedule == "cosine":
        base = optimizer.param_groups[0]["lr"]
        after = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup),
                                  eta_min=base * optim.min_lr_factor)
    else:
        after = ConstantLR(optimizer, factor=1.0, total_iters=0)
    if warmup == 0:
        return after
    ramp = LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=max(0, warmup - 1))
    return SequentialLR(optimizer, schedulers=[ramp, after], milestones=[warmup])
