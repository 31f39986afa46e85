"""Whole-dataset fitting (`spin fits init`): every sample of a SPIN-format dataset through the actors.

Nothing may be dropped here, so batches are submitted with `FittingPool.submit(block=True)`: the
driver waits for room on an actor instead of dropping. A batch lost with a dead actor is retried
once; what is still lost after that is counted (`dropped`) and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fitting_workers.config import FittingConfig
from fitting_workers.counts import FitCounts
from fitting_workers.jobs import BatchOutcome, FitJobBatch
from fitting_workers.pool import FittingPool
from spin.errors import UserError

if TYPE_CHECKING:
    from spin.body.files import BodyFiles
    from spin.data.spin_format import SpinAnnotations

# Readers of the store actor take batches this large at most (one read transaction each).
PRESENCE_CHUNK = 4096
RESTART_WAIT_S = 120.0


@dataclass
class InitialParameters:
    """Where every sample's fit starts: pose (N, 72) axis-angle, betas (N, 10), cam_t (N, 3) or None."""

    pose: np.ndarray
    betas: np.ndarray
    cam_t: np.ndarray | None = None


@dataclass
class DatasetFitReport:
    """Outcome of fitting one dataset: the job counts (`FitCounts`) and where the work ran."""

    dataset: str
    samples: int
    counts: FitCounts
    restarts: int
    in_store: int
    seconds: float
    actor_nodes: list[str] = field(default_factory=list)
    writer_node: str | None = None
    last_error: str | None = None

    @property
    def fits_per_s(self) -> float:
        return self.counts.fitted / self.seconds if self.seconds > 0 else 0.0


def dataset_keys(dataset: str, n: int) -> list[str]:
    """Store keys `<dataset>/<index>` of a dataset's n samples."""
    return [f"{dataset}/{index}" for index in range(n)]


def check_dataset_name(dataset: str) -> str:
    """A dataset name usable as a key prefix: non-empty, no '/' or whitespace."""
    if not dataset or "/" in dataset or any(ch.isspace() for ch in dataset):
        raise UserError(f"dataset name {dataset!r} cannot prefix store keys; pass --dataset without '/' or "
                        "spaces (e.g. --dataset lsp).")
    return dataset


def mean_initialisation(body_files: BodyFiles, n: int) -> InitialParameters:
    """SPIN's start for a sample without a prediction: the mean pose and shape, camera from keypoints.

    Uses the model's `smpl_mean_params.npz`; without one, the rest pose turned to face the camera
    (global orientation π about x) and zero betas.
    """
    if body_files.mean_params is not None:
        import torch

        from spin.body.files import load_mean_params
        from spin.geometry import matrix_to_axis_angle, rot6d_to_matrix

        mean = load_mean_params(body_files.mean_params)
        rotations = rot6d_to_matrix(torch.as_tensor(np.asarray(mean["pose"], np.float32)).reshape(24, 6))
        pose = matrix_to_axis_angle(rotations).reshape(72).numpy()
        betas = np.asarray(mean["shape"], np.float32).reshape(10)
    else:
        pose = np.zeros(72, np.float32)
        pose[0] = np.pi
        betas = np.zeros(10, np.float32)
    return InitialParameters(
        pose=np.repeat(pose[None].astype(np.float32), n, axis=0),
        betas=np.repeat(betas[None], n, axis=0),
        cam_t=None,
    )


def load_initialisation(path: str | Path, n: int) -> InitialParameters:
    """INIT.npz: `pose` (N, 72), `betas` (or `shape`, N × ≥10), optional `cam_t` (N, 3), finite,
    N = dataset size (`spin.data.smpl_params.read_smpl_params`)."""
    from spin.data.smpl_params import read_smpl_params

    arrays = read_smpl_params(path, "Initialisation file", "pass an .npz with pose (N, 72) and betas "
                              "(N, 10) to --init", rows=n, optional=("cam_t",))
    return InitialParameters(pose=arrays["pose"], betas=arrays["betas"], cam_t=arrays.get("cam_t"))


def _batches(keys: list[str], keypoints: np.ndarray, init: InitialParameters, batch_size: int):
    for start in range(0, len(keys), batch_size):
        part = slice(start, start + batch_size)
        yield FitJobBatch(
            keys=keys[part],
            keypoints=keypoints[part],
            pose=init.pose[part],
            betas=init.betas[part],
            cam_t=None if init.cam_t is None else init.cam_t[part],
        )


def count_present(store, keys: list[str]) -> int:
    """How many of `keys` have a fit in the store (read in chunks)."""
    return sum(
        int(np.asarray(store.get(keys[start:start + PRESENCE_CHUNK])["present"]).sum())
        for start in range(0, len(keys), PRESENCE_CHUNK)
    )


def writer_node_id(store) -> str | None:
    """Ray node id of a `RemoteFitsStore`'s writer actor (None for other stores)."""
    handle = getattr(store, "handle", None)
    if handle is None:
        return None
    import ray

    return ray.get(handle.node_id.remote())


def fit_dataset(
    annotations: SpinAnnotations,
    dataset: str,
    store,
    config: FittingConfig,
    body_files: BodyFiles,
    init: InitialParameters | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_ready: Callable[[FittingPool], None] | None = None,
) -> DatasetFitReport:
    """Fit every sample of `annotations` with the actors; candidates go to `store` as `<dataset>/<i>`.

    store: the store writer (`RemoteFitsStore`); Ray must be running (`runtime.ray_session`).
    init: where fits start (default: the mean pose, camera from the keypoints). on_progress is
    called with (samples done, samples total) as batches finish; on_ready with the pool once every
    actor has started (before the first batch).
    """
    check_dataset_name(dataset)
    n = len(annotations)
    if n == 0:
        raise UserError(f"{annotations.path} holds no samples; nothing to fit.")
    init = init if init is not None else mean_initialisation(body_files, n)
    keys = dataset_keys(dataset, n)
    store.declare_dataset(dataset, size=n)

    pool: FittingPool | None = None

    def progress(_outcome: BatchOutcome | None) -> None:
        if on_progress is not None and pool is not None:
            totals = pool.totals()
            on_progress(totals.fitted + totals.errors + totals.dropped, n)

    pool = FittingPool(config, body_files, store, on_outcome=progress)
    try:
        pool.wait_ready()
        if on_ready is not None:
            on_ready(pool)
        start = time.perf_counter()
        for batch in _batches(keys, annotations.keypoints, init, config.batch_size):
            if not pool.submit(batch, block=True):
                progress(None)
        pool.wait_idle()
        seconds = time.perf_counter() - start
        # An actor killed late may still be restarting: let it come back, so the report counts it.
        pool.wait_restarts(timeout=RESTART_WAIT_S)
        pool.health()  # node ids of restarted actors
        pool.poll()
        counts, stats = pool.totals(), pool.counts()
        nodes = sorted({info.get("node_id", "") for info in pool.actor_info() if info.get("node_id")})
    finally:
        pool.shutdown()

    return DatasetFitReport(
        dataset=dataset,
        samples=n,
        counts=counts,
        restarts=stats["restarts"],
        in_store=count_present(store, keys),
        seconds=seconds,
        actor_nodes=nodes,
        writer_node=writer_node_id(store),
        last_error=stats["last_error"],
    )
