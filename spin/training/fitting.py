"""Fitting in the loop: `sync` (SPIN: fit inside the step) and `async` (publish to the actor pool)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from spin.training.step import FitJobs


class AsyncFitting:
    """Publishes canonical-frame predictions to a `FittingPool` in batches of `batch_size`; never waits.

    Jobs are buffered until a full fitting batch is ready (the pool's actors are most efficient on
    their configured batch size); a batch the pool has no room for is dropped there and counted.
    """

    def __init__(self, pool: Any, batch_size: int):
        self.pool = pool
        self.batch_size = batch_size
        self._buffer: list[FitJobs] = []
        self._buffered = 0
        self.published = 0
        self.dropped_batches = 0

    def publish(self, jobs: FitJobs, step: int, round: int) -> None:
        from fitting_workers.jobs import FitJobBatch

        self.pool.set_step(step)
        self._buffer.append(jobs)
        self._buffered += len(jobs.keys)
        while self._buffered >= self.batch_size:
            merged = _concat(self._buffer)
            head, tail = _split(merged, self.batch_size)
            self._buffer = [tail] if tail.keys else []
            self._buffered = len(tail.keys)
            batch = FitJobBatch(keys=head.keys, keypoints=head.keypoints, pose=head.pose, betas=head.betas,
                                cam_t=head.cam_t, step=step, round=round)
            self.published += len(batch)
            if not self.pool.submit(batch):
                self.dropped_batches += 1

    def stats(self) -> dict[str, Any]:
        return self.pool.stats()

    def close(self) -> None:
        self.pool.shutdown()


class SyncFitting:
    """SPIN's order inside the step: SMPLify on the batch from the detached prediction, then
    `put_if_better`, then the store's best fits for the batch's keys are read back."""

    def __init__(self, smplify: Any, store: Any):
        self.smplify = smplify
        self.store = store
        self.fitted = 0
        self.accepted = 0
        self.improved = 0
        self.failed = 0
        self.valid = 0
        self.loss_sum = 0.0
        self.fit_seconds = 0.0

    def fit_and_store(self, jobs: FitJobs, step: int, round: int, threshold: float) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        result = self.smplify.fit(jobs.keypoints, jobs.pose, jobs.betas, jobs.cam_t)
        self.fit_seconds += time.perf_counter() - started
        ok = ~np.asarray(result.failed, dtype=bool)
        keys = [key for key, good in zip(jobs.keys, ok, strict=True) if good]
        if keys:
            put = self.store.put_if_better(keys, result.pose[ok], result.betas[ok], result.cam_t[ok],
                                           result.loss[ok], round=round, step=step, source="smplify")
            self.accepted += int(put.accepted.sum())
            self.improved += int(put.improved.sum())
        self.fitted += len(jobs.keys)
        self.failed += int((~ok).sum())
        self.valid += int((np.asarray(result.loss)[ok] < threshold).sum())
        self.loss_sum += float(np.asarray(result.loss)[ok].sum())
        fits = self.store.get(jobs.keys)
        return {name: fits[name] for name in ("pose", "betas", "loss", "present")}

    def stats(self) -> dict[str, Any]:
        usable = self.fitted - self.failed
        return {"fitted": self.fitted, "accepted": self.accepted, "improved": self.improved,
                "failed": self.failed, "valid": self.valid,
                "accepted_frac": self.accepted / self.fitted if self.fitted else 0.0,
                "improved_frac": self.improved / self.fitted if self.fitted else 0.0,
                "mean_loss": self.loss_sum / usable if usable else float("nan"),
                "fits_per_s": self.fitted / self.fit_seconds if self.fit_seconds else 0.0,
                "queue_depth": 0, "staleness_steps": 0.0}

    def close(self) -> None:
        pass


def _concat(parts: list[FitJobs]) -> FitJobs:
    if len(parts) == 1:
        return parts[0]
    return FitJobs(keys=[k for p in parts for k in p.keys],
                   keypoints=np.concatenate([p.keypoints for p in parts]),
                   pose=np.concatenate([p.pose for p in parts]),
                   betas=np.concatenate([p.betas for p in parts]),
                   cam_t=np.concatenate([p.cam_t for p in parts]))


def _split(jobs: FitJobs, n: int) -> tuple[FitJobs, FitJobs]:
    def cut(sl: slice) -> FitJobs:
        return FitJobs(keys=jobs.keys[sl], keypoints=jobs.keypoints[sl], pose=jobs.pose[sl],
                       betas=jobs.betas[sl], cam_t=jobs.cam_t[sl])

    return cut(slice(0, n)), cut(slice(n, None))
