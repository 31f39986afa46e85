"""Fitting on one of N trainer ranks: one store writer for the run, a fitting pool per rank.

Rank 0 declares the training datasets and (async) starts the store writer actor on its own node,
whose local disk holds the LMDB directory; every other rank waits for it (a barrier, then the
writer's name) and never starts a writer. Each rank runs its own `FittingPool` with its share of
`fitting.num_actors` (`placement.actors_for_rank`) and publishes its own batches' jobs, so fits
from every rank reach the one writer. Reads: a rank on the writer's node reads LMDB directly in
the data loader's collate; a rank elsewhere reads through the writer actor, prefetched on a thread
(`remote_reads`), and its "store" for anything else is the writer actor, never a local LMDB.
`sync` fitting (SMPLify inside one process's step, writing the store from that process) is
refused: with N ranks there would be N writers.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spin.distributed.ddp import barrier
from spin.distributed.placement import actors_for_rank
from spin.errors import UserError

if TYPE_CHECKING:
    from spin.body import BodyFiles
    from spin.config import TrainConfig

WRITER_WAIT_S = 300.0  # ranks other than 0 wait this long for rank 0's store writer


def build_rank_fitting(config: TrainConfig, store_path: Path, dataset_sizes: dict[str, int],
                       body_files: BodyFiles, rank: int, world_size: int) -> Any:
    """`spin.training.fitting.build_fitting` for rank `rank` of `world_size` (> 1); collective."""
    from spin.training.fitting import NoFitting, open_declared
    from spin.training.supervision import CollateWithFits, StoreFitReader
    from store import FitsStore

    mode = config.fitting.mode
    if mode == "sync":
        raise UserError(f"Config fitting.mode is sync, which fits inside one process's step, but "
                        f"distributed.num_workers is {world_size}; use fitting.mode=async (or off).")
    threshold = config.fitting.smplify.threshold
    store = open_declared(store_path, dataset_sizes) if rank == 0 else None
    barrier()  # the datasets are declared before any other rank opens the store
    if mode == "off":
        # Nothing writes but rank 0 (round records); the others read the same (node-local) store.
        store = store if store is not None else FitsStore(store_path, readonly=True)
        return NoFitting(store, CollateWithFits(StoreFitReader(store_path), threshold))
    if store is not None:
        store.close()
    return _start_rank_async(config, store_path, body_files, rank, world_size)


def _start_rank_async(config: TrainConfig, store_path: Path, body_files: BodyFiles, rank: int,
                      world_size: int) -> Any:
    import ray

    from fitting_workers.pool import FittingPool
    from fitting_workers.store_actor import open_store_writer
    from spin.distributed.remote_reads import connect_store_writer, fit_reader_for, reads_in_collate
    from spin.training.fitting import AsyncFitting, close_all
    from spin.training.supervision import CollateWithFits
    from store import FitsStore

    cfg = config.fitting
    if not ray.is_initialized():  # torchrun ranks: each would start a Ray of its own
        if not cfg.ray_address:
            raise UserError("Config fitting.mode is async with torchrun ranks but fitting.ray_address is "
                            "not set; start Ray (`ray start --head`) and set fitting.ray_address=auto.")
        from fitting_workers.runtime import start_ray

        start_ray(address=cfg.ray_address, connect_timeout_s=cfg.connect_timeout_s)
    closers: list[Any] = []
    fitting = None
    try:
        if rank == 0:
            writer = open_store_writer(str(store_path))  # on this node: LMDB stays on its local disk
            closers.append(writer.kill)
        else:
            writer = connect_store_writer(store_path, timeout_s=WRITER_WAIT_S)
        reader = fit_reader_for(store_path, writer)
        local = reads_in_collate(reader)
        if rank == 0:
            store = FitsStore(store_path, readonly=True)  # rank 0 is on the writer's node
            closers.append(store.close)
        else:
            store = writer  # statistics and counters through the actor: no LMDB opened off its node
        share = replace(cfg, num_actors=actors_for_rank(cfg.num_actors, rank, world_size))
        pool = FittingPool(share, body_files, writer)
        closers.append(pool.shutdown)
        collate = CollateWithFits(reader if local else None, cfg.smplify.threshold)
        fitting = AsyncFitting(pool, cfg.batch_size, store, writer, collate, closers)
        fitting.prefetch_reader = None if local else reader
        pool.wait_ready()
        return fitting
    except BaseException:
        close_all(fitting._closers if fitting is not None else closers)
        raise
