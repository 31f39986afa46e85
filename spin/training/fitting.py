"""Fitting in the loop behind one interface: `off`, `sync` (SPIN: fit inside the step), `async`.

The trainer calls, per step, `supervision_for(batch, pred, step, round)` before its losses and
`publish(batch, pred, step, round)` after its optimiser step; per round `drain(timeout)`,
`stats()` and `record_round(...)`; `close()` at the end. `build_fitting` chooses the mode once,
declares the datasets, opens the store (one writer) and, for `async`, starts Ray, the store writer
actor and the actor pool. Every mode's fits go through `fitting_workers.fit_path.fit_and_offer`
(in this process for `sync`, in the actors for `async`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fitting_workers.counts import FitCounts
from fitting_workers.fit_path import fit_and_offer, smplify_fitter
from fitting_workers.jobs import FitJobBatch, concat_jobs
from spin.training.step import Prediction, canonical_fit_jobs
from spin.training.supervision import CollateWithFits, StoreFitReader, Supervision, build_supervision

if TYPE_CHECKING:
    import torch

    from spin.body import BodyFiles, BodyModel
    from spin.config import TrainConfig


def close_all(closers: list[Callable[[], None]]) -> None:
    """Run and remove `closers`, last added first; teardown goes on whatever one of them raises."""
    while closers:
        closer = closers.pop()
        try:
            closer()
        except Exception:  # noqa: BLE001 - one failing part must not keep the others running
            pass


class Fitting(Protocol):
    """What the trainer needs of fitting, whichever the mode.

    store: the local store for the run's reads (statistics, counters, snapshots); collate: the
    data loader's collate function (reads the batch's fits where the mode reads them there).
    """

    mode: str
    store: Any
    collate: CollateWithFits

    def supervision_for(self, batch: dict[str, Any], pred: Prediction, step: int, round: int) -> Supervision:
        """The batch's 3D supervision (CPU) for the losses of this step."""

    def publish(self, batch: dict[str, Any], pred: Prediction, step: int, round: int) -> None:
        """Hand the step's predictions on for fitting (after the optimiser step); never waits."""

    def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for fits still being made (round ends)."""

    def stats(self) -> dict[str, Any]:
        """Fitting statistics (`FitCounts.as_dict()` keys and the mode's own)."""

    def record_round(self, number: int, summary: dict[str, Any]) -> None:
        """Record a finished round's summary in the store's metadata."""

    def close(self) -> None:
        """Stop what the mode started; idempotent."""


class _LocalStoreFitting:
    """Shared by `off` and `sync`: this process is the store's only writer."""

    mode = "off"

    def __init__(self, store: Any, collate: CollateWithFits) -> None:
        self.store = store
        self.collate = collate

    def supervision_for(self, batch, pred, step, round) -> Supervision:
        return batch["supervision"]  # read with the batch, in the data loader

    def publish(self, batch, pred, step, round) -> None:
        pass

    def drain(self, timeout: float) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {}

    def record_round(self, number: int, summary: dict[str, Any]) -> None:
        self.store.record_round(number, summary)

    def close(self) -> None:
        self.store.close()


class NoFitting(_LocalStoreFitting):
    """`fitting.mode=off`: the store's fits (and ground truth) supervise; nothing is fitted."""


class SyncFitting(_LocalStoreFitting):
    """SPIN's order inside the step: SMPLify on the batch from the detached prediction, then
    `put_if_better`, then the store's best fits for the batch's keys supervise."""

    mode = "sync"

    def __init__(self, fitter: Callable[[FitJobBatch], Any], store: Any, threshold: float) -> None:
        super().__init__(store, CollateWithFits(None, threshold))  # the step reads, after fitting
        self.fitter = fitter
        self.threshold = threshold
        self.counts = FitCounts()

    def supervision_for(self, batch, pred, step, round) -> Supervision:
        jobs = canonical_fit_jobs(pred, batch, step, round)
        _, counts = fit_and_offer(self.fitter, self.store, jobs, self.threshold)
        self.counts = self.counts + counts
        # The best fit per key after the write (the new one where accepted, else the stored one).
        fits = self.store.get(jobs.keys)
        return build_supervision(fits, batch["flip"], batch["rot"], batch["pose"], batch["betas"],
                                 batch["has_smpl"], self.threshold)

    def stats(self) -> dict[str, Any]:
        counts = self.counts
        return {**counts.as_dict(), "fits_per_s": counts.fitted / counts.fit_seconds if counts.fit_seconds
                else 0.0, "queue_depth": 0, "staleness_steps": 0.0}


class AsyncFitting:
    """Publishes canonical-frame predictions to a `FittingPool` in batches of `batch_size`; never waits.

    Jobs are buffered until a full fitting batch is ready (the pool's actors are most efficient on
    their configured batch size); a batch the pool has no room for is dropped there and counted.
    Supervision is what the data loader read from the store with the batch.
    """

    mode = "async"

    def __init__(self, pool: Any, batch_size: int, store: Any, writer: Any, collate: CollateWithFits,
                 closers: list[Callable[[], None]] | None = None) -> None:
        self.pool = pool
        self.batch_size = batch_size
        self.store = store  # read-only: any local process may read
        self.writer = writer
        self.collate = collate
        self._buffer: FitJobBatch | None = None
        self._closers = list(closers or [])
        self.prefetch_reader: Any = None  # a reader the loader's collate cannot run (a remote rank's)

    def supervision_for(self, batch, pred, step, round) -> Supervision:
        return batch["supervision"]

    def publish(self, batch, pred, step, round) -> None:
        self.pool.set_step(step)
        jobs = canonical_fit_jobs(pred, batch, step, round)
        pending = jobs if self._buffer is None else concat_jobs([self._buffer, jobs])
        while pending is not None and len(pending) >= self.batch_size:
            head, pending = pending.split(self.batch_size)
            self.pool.submit(head)
        self._buffer = pending

    def drain(self, timeout: float) -> None:
        self.pool.wait_idle(timeout=timeout)

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()

    def record_round(self, number: int, summary: dict[str, Any]) -> None:
        self.writer.record_round(number, summary)

    def close(self) -> None:
        close_all(self._closers)


def open_declared(store_path: Path, dataset_sizes: dict[str, int]) -> Any:
    """The store at `store_path`, opened for writing, with the training datasets (name → size) declared."""
    from store import FitsStore

    store = FitsStore(store_path)
    try:
        for name, size in dataset_sizes.items():
            store.declare_dataset(name, size)
    except BaseException:
        store.close()
        raise
    return store


def build_fitting(config: TrainConfig, store_path: Path, dataset_sizes: dict[str, int], body: BodyModel,
                  body_files: BodyFiles, device: torch.device) -> Fitting:
    """The run's fitting, chosen once from `config.fitting.mode`, with its store opened.

    Declares the training datasets (name → size) before any writer starts; then exactly one writer:
    this process (`off`, `sync`) or the store writer actor (`async`).
    """
    threshold = config.fitting.smplify.threshold
    store = open_declared(store_path, dataset_sizes)
    mode = config.fitting.mode
    if mode == "off":
        return NoFitting(store, CollateWithFits(StoreFitReader(store_path), threshold))
    if mode == "sync":
        from fitting_workers.smplify import SMPLify

        smplify = SMPLify(body, body_files.prior, config.fitting.smplify, device=device)
        return SyncFitting(smplify_fitter(smplify), store, threshold)
    store.close()
    return _start_async(config, store_path, body_files)


def _start_async(config: TrainConfig, store_path: Path, body_files: BodyFiles) -> AsyncFitting:
    from fitting_workers.pool import FittingPool
    from fitting_workers.runtime import start_ray, stop_ray
    from fitting_workers.store_actor import open_store_writer
    from store import FitsStore

    cfg = config.fitting
    closers: list[Callable[[], None]] = []
    fitting = None
    try:
        if start_ray(address=cfg.ray_address, connect_timeout_s=cfg.connect_timeout_s,
                     start_timeout_s=cfg.start_timeout_s):
            closers.append(stop_ray)
        writer = open_store_writer(str(store_path))
        closers.append(writer.kill)  # releases the writer handle (after the pool stops)
        reader = FitsStore(store_path, readonly=True)
        closers.append(reader.close)
        pool = FittingPool(cfg, body_files, writer)
        closers.append(pool.shutdown)
        collate = CollateWithFits(StoreFitReader(store_path), cfg.smplify.threshold)
        fitting = AsyncFitting(pool, cfg.batch_size, reader, writer, collate, closers)
        pool.wait_ready()
        return fitting
    except BaseException:
        close_all(fitting._closers if fitting is not None else closers)
        raise
