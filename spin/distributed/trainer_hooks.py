"""What the trainer does differently on N ranks, in small functions it calls (one rank: no-ops).

Collectives (every rank must call them at the same point): `rank_state` (inside `state_dict`,
so `save_last` and the round end call `state_dict` on every rank and only rank 0 writes),
`round_totals` and `finish_round_end`. The order at a round end is: each rank drains its own
fitting pool → `round_totals` → (rank 0 alone: store statistics, evaluation, snapshot, rounds
table, overlays) → `state_dict()` → (rank 0 writes the checkpoints) → `finish_round_end`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn

from spin.distributed.ddp import all_gather_objects, barrier, check_world_size, sum_across_ranks, wrap_model


def training_module(model: nn.Module, device: torch.device, sync_batchnorm: bool,
                    world_size: int = 1) -> nn.Module:
    """The module the training forward pass runs: DDP over the rank group, `model` itself on one rank.

    world_size > 1 without a process group of that size is a programming error (ranks would train
    apart and their collectives would silently do nothing): launch ranks with `spin.distributed.launch`.
    """
    import torch.distributed as dist

    grouped = dist.is_available() and dist.is_initialized()
    if world_size > 1 and not (grouped and dist.get_world_size() == world_size):
        raise RuntimeError(f"Trainer built as one of {world_size} ranks without a process group of "
                           "that size; start ranks with spin.distributed.launch (Ray Train or torchrun).")
    return wrap_model(model, device, sync_batchnorm)


def rank_seed(seed: int, rank: int) -> int:
    """Each rank's global RNG seed (rank 0 keeps the single-process seed; DDP copies rank 0's
    initial weights to every rank, so only the ranks' random draws differ)."""
    return seed + rank


def rank_state(rng: dict[str, Any], round_acc: dict[str, float], world_size: int) -> dict[str, Any]:
    """The checkpoint's per-rank entries, gathered from every rank (collective): RNG states and
    round accumulators in rank order, and the world size that wrote them."""
    gathered = all_gather_objects({"rng": rng, "round_acc": dict(round_acc)})
    return {"world_size": world_size, "rng_per_rank": [g["rng"] for g in gathered],
            "round_acc_per_rank": [g["round_acc"] for g in gathered]}


def restore_rank_state(state: dict[str, Any], rank: int, world_size: int, checkpoint: str
                       ) -> tuple[dict[str, Any], dict[str, float] | None]:
    """This rank's (RNG state, round accumulator or None) from a checkpoint; a checkpoint of another
    world size is a UserError (each rank's place in the sampled stream depends on it)."""
    check_world_size(state.get("world_size"), world_size, checkpoint)
    rngs = state.get("rng_per_rank") or [state["rng"]]
    accs = state.get("round_acc_per_rank")
    return rngs[rank], (dict(accs[rank]) if accs else None)


def round_totals(round_acc: dict[str, float]) -> dict[str, float]:
    """The round's counters summed over the ranks (collective); `steps_time` stays this rank's."""
    totals = {k: round(v) if isinstance(round_acc[k], int) else v  # counts stay integers
              for k, v in sum_across_ranks(round_acc).items()}
    totals["steps_time"] = round_acc["steps_time"]  # steps/s of one rank (they run in lockstep)
    return totals


def finish_round_end() -> None:
    """Every rank waits until rank 0 has written the round's files (collective)."""
    barrier()


def follow_round_end(trainer: Any) -> dict[str, Any]:
    """A rank other than 0 at a round end (after draining its pool): its part of the collectives, in
    rank 0's order; returns no metrics (rank 0 has them)."""
    round_totals(trainer.round_acc)
    trainer.round_acc = trainer._empty_round_acc()
    trainer.state_dict()
    finish_round_end()
    return {}


def build_fitting(config: Any, store_path: Any, dataset_sizes: dict[str, int], body: Any, body_files: Any,
                  device: torch.device, rank: int, world_size: int) -> Any:
    """`spin.training.fitting.build_fitting` on one rank; on several, rank 0 declares the datasets and
    starts the one store writer, every rank its own pool (`rank_fitting`). Collective."""
    if world_size > 1:
        from spin.distributed.rank_fitting import build_rank_fitting

        return build_rank_fitting(config, store_path, dataset_sizes, body_files, rank, world_size)
    from spin.training.fitting import build_fitting as single_process

    return single_process(config, store_path, dataset_sizes, body, body_files, device)


def training_batches(loader: Iterable[dict[str, Any]], fitting: Any,
                     threshold: float) -> Iterator[dict[str, Any]]:
    """The loader's batches, with fits prefetched on a thread where the fitting's reader cannot run in
    the loader's collate (a rank off the store's node reads through the store actor)."""
    reader = getattr(fitting, "prefetch_reader", None)
    if reader is None:
        return iter(loader)
    from spin.distributed.remote_reads import prefetch_fits

    return prefetch_fits(iter(loader), reader, threshold)
