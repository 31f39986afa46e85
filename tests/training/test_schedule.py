"""The LR schedule (torch's LinearLR → CosineAnnealingLR / constant): shape, and exact on resume."""

from __future__ import annotations

import pytest
import torch

from spin.config import OptimConfig
from spin.training.schedule import build_scheduler


def _run(optim: OptimConfig, total: int, steps: int, state: dict | None = None):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([param], lr=optim.lr)
    scheduler = build_scheduler(optimizer, optim, total)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    lrs = []
    for _ in range(steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


@pytest.mark.parametrize("schedule,warmup", [("cosine", 5), ("cosine", 0), ("constant", 4), ("constant", 0)])
def test_resumed_schedule_equals_the_uninterrupted_one(schedule, warmup):
    optim = OptimConfig(lr=1e-3, schedule=schedule, warmup_steps=warmup, min_lr_factor=0.1)
    straight, _ = _run(optim, 30, 30)
    first, state = _run(optim, 30, 12)
    rest, _ = _run(optim, 30, 18, state)
    assert first + rest == straight


def test_warmup_ramps_linearly_then_cosine_reaches_the_floor():
    optim = OptimConfig(lr=1.0, schedule="cosine", warmup_steps=4, min_lr_factor=0.1)
    lrs, _ = _run(optim, 20, 21)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[20] == pytest.approx(0.1)
