"""Process groups and DDP wrapping for the trainer ranks (Ray Train or torchrun set the group up).

Under Ray Train the TorchTrainer has initialised the process group before the rank's function
runs; under torchrun, `init_from_env()` does it from torchrun's environment variables. Either way
the rank's `Trainer` then calls `wrap_model` once, after building the model, and uses the wrapper
for the training forward pass only: evaluation, overlays and checkpoints use the plain module
(`unwrap_model`), so a checkpoint written by N ranks loads into a single process and back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from spin.errors import UserError

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the group: global rank, world size, rank on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def rank_from_env(environ: dict[str, str] | None = None) -> RankInfo:
    """The rank torchrun (or any env:// launcher) gave this process; rank 0 of 1 when not launched so."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return RankInfo()
    try:
        info = RankInfo(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    except ValueError:
        raise UserError("Environment variables RANK / WORLD_SIZE / LOCAL_RANK are not integers; "
                        "launch with torchrun or unset them.") from None
    if not 0 <= info.rank < info.world_size:
        raise UserError(f"Environment variable RANK={info.rank} is outside WORLD_SIZE={info.world_size}; "
                        "launch with torchrun or unset them.")
    return info


def init_from_env(backend: str, timeout_s: float = 1800.0) -> RankInfo:
    """Join the process group described by torchrun's environment variables (env:// rendezvous).

    Single-process runs (no RANK/WORLD_SIZE, or WORLD_SIZE=1) create no group. Idempotent.
    """
    info = rank_from_env()
    if info.world_size == 1 or dist.is_initialized():
        return info
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise UserError(f"Environment variable {missing[0]} is not set for rank {info.rank}; "
                        "launch with torchrun, which sets it.")
    if backend == "nccl" and torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)  # before the group: nccl binds to the current device
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                            timeout=timedelta(seconds=timeout_s))
    return info


def current_rank() -> RankInfo:
    """Rank of this process in the initialised default group (rank 0 of 1 without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return RankInfo()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return RankInfo(dist.get_rank(), dist.get_world_size(), local)


def rank_device(device: str, local_rank: int) -> str:
    """The device name a rank trains on: `cuda` becomes `cuda:<local_rank>`; others unchanged."""
    if device in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return device


def wrap_model(model: nn.Module, device: torch.device, sync_batchnorm: bool = False,
               find_unused_parameters: bool = False) -> nn.Module:
    """`model` wrapped in DDP for the current process group (unchanged without one).

    sync_batchnorm: BatchNorm statistics over the global batch (converted in place, so the plain
    module the caller keeps holds the SyncBatchNorm layers too; their state dict is BatchNorm's).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    if sync_batchnorm:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=ids[0] if ids else None,
                                               find_unused_parameters=find_unused_parameters)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside a DDP wrapper (the module itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def check_world_size(saved: int | None, current: int, checkpoint: str) -> None:
    """Resume only with the world size that wrote `checkpoint`: each rank's position in the sampled
    stream (and so the data order) depends on it. None (a checkpoint from before ranks) = 1."""
    saved = 1 if saved is None else int(saved)
    if saved != current:
        raise UserError(f"Checkpoint {checkpoint} was written by {saved} rank(s) but this run has {current}; "
                        f"resume with distributed.num_workers={saved}, or start a new run from its weights "
                        f"with model.init_checkpoint={checkpoint}.")


def _grouped() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_objects(value: object) -> list[object]:
    """Every rank's `value`, in rank order, on every rank (`[value]` without a group). Collective:
    every rank must call it (e.g. each rank's RNG state, gathered for rank 0's checkpoint)."""
    if not _grouped():
        return [value]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def sum_across_ranks(values: dict[str, float]) -> dict[str, float]:
    """Per-key sums over the ranks (same keys on every rank; e.g. a round's sample counters).
    Collective; float64 on the CPU (gloo) or the current CUDA device (nccl)."""
    if not _grouped():
        return dict(values)
    keys = sorted(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")
    total = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return dict(zip(keys, total.cpu().tolist(), strict=True))


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if _grouped():
        dist.barrier()


def destroy_process_group() -> None:
    """Leave the process group if this process joined one; idempotent."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
