"""Programs the distributed tests run in spawned ranks (importable by the spawned interpreters)."""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from spin.distributed.ddp import unwrap_model, wrap_model
from spin.training.sampler import ResumableSampler

SEED = 7


def tiny_net() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def tiny_data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(n, 6, generator=generator), torch.randn(n, 3, generator=generator)


def regressor(mean_params_path: str) -> nn.Module:
    from spin.body import load_mean_params
    from spin.models import build_regressor
    from spin.models.regressor import ModelConfig

    torch.manual_seed(SEED)
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=32, hidden=32, iterations=1),
                            load_mean_params(mean_params_path))
    return model.eval()  # frozen BN statistics and no dropout: per-sample outputs, comparable batches


def regressor_data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randn(n, 24 * 9 + 13, generator=generator)


def regressor_output(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    return torch.cat([out.rotmat.flatten(1), out.betas, out.cam], dim=1)  # every head in the loss


def batches(n: int, per_rank: int, steps: int, rank: int, world: int) -> list[list[int]]:
    """Dataset indices of each step's batch on `rank` (the trainer's sampler)."""
    sampler = iter(ResumableSampler(n, seed=SEED, rank=rank, world_size=world))
    return [[next(sampler)[0] for _ in range(per_rank)] for _ in range(steps)]


def train(model: nn.Module, forward, inputs: torch.Tensor, targets: torch.Tensor,
          steps: list[list[int]]) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for indices in steps:
        loss = nn.functional.mse_loss(forward(model, inputs[indices]), targets[indices])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def ddp_rank(rank: int, world: int, init: str, kind: str, per_rank: int, steps: int, out: str,
             mean_params: str = "") -> None:
    """One rank: join the gloo group, train `kind` ("tiny" or "regressor") with DDP, save weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        if kind == "tiny":
            model, (inputs, targets), forward = tiny_net(), tiny_data(), lambda m, x: m(x)
        else:
            model, (inputs, targets) = regressor(mean_params), regressor_data()
            forward = regressor_output
        ddp = wrap_model(model, torch.device("cpu"))
        assert ddp is not model, "no DDP wrapper with a 2-rank group"
        plan = batches(len(inputs), per_rank, steps, rank, world)
        train(ddp, forward, inputs, targets, plan)
        torch.save({"state": unwrap_model(ddp).state_dict(), "indices": plan}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
