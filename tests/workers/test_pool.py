"""Queue, backpressure, retries and health of `FittingPool`, on real Ray with a stand-in fit.

The stand-in replaces only SMPLify (a sleep that returns the initial pose) and the LMDB store (a
dict in a Ray actor with the same put-if-better rule), so these tests run in seconds; the real
SMPLify and store are exercised by test_fits_init_e2e.py and test_fault.py.
"""

from __future__ import annotations

import functools
import time
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import ray

from fitting_workers.actor import FittingActor
from fitting_workers.config import FittingConfig
from fitting_workers.jobs import FitJobBatch
from fitting_workers.pool import FittingPool

pytestmark = pytest.mark.usefixtures("local_ray")
B = 4


def make_batch(tag: str, n: int = B, step: int = 0, loss: float = 10.0) -> FitJobBatch:
    """Keys `<tag>/<i>`; the stand-in reports loss = keypoints[:, 0, 0], so `loss` steers acceptance."""
    keypoints = np.zeros((n, 49, 3), np.float32)
    keypoints[:, 0, 0] = loss
    return FitJobBatch(keys=[f"{tag}/{i}" for i in range(n)], keypoints=keypoints,
                       pose=np.zeros((n, 72)), betas=np.zeros((n, 10)), step=step)


def stand_ins(delay: float):
    """(actor class, store client) built inside a function so Ray pickles them by value."""

    class SleepFitActor(FittingActor):
        def _build_fitter(self, body_files, config, device):
            def fit(batch):
                time.sleep(delay)
                if any(key.startswith("boom") for key in batch.keys):
                    raise RuntimeError("stand-in fit exploded")
                n = len(batch)
                return SimpleNamespace(
                    pose=batch.pose, betas=batch.betas, cam_t=np.ones((n, 3), np.float32),
                    loss=batch.keypoints[:, 0, 0].copy(),
                    failed=np.array([key.startswith("fail") for key in batch.keys]),
                )
            return fit

    @ray.remote(num_cpus=0)
    class DictStore:
        def __init__(self):
            self.loss = {}

        def get(self, keys):
            return {"present": np.array([k in self.loss for k in keys], bool)}

        def put_if_better(self, keys, pose, betas, cam_t, loss, round=0, step=0, source="smplify"):
            accepted = np.zeros(len(keys), bool)
            for i, key in enumerate(keys):
                if key not in self.loss or loss[i] < self.loss[key]:
                    self.loss[key] = float(loss[i])
                    accepted[i] = True
            return accepted

        def losses(self):
            return dict(self.loss)

    class DictStoreClient:
        def __init__(self, name, handle=None):
            self.handle = handle or ray.get_actor(name)

        def get(self, keys):
            return ray.get(self.handle.get.remote(keys))

        def put_if_better(self, *args, **kwargs):
            return ray.get(self.handle.put_if_better.remote(*args, **kwargs))

        def losses(self):
            return ray.get(self.handle.losses.remote())

    name = f"dict-store-{uuid.uuid4().hex}"
    owner = DictStoreClient(name, DictStore.options(name=name).remote())  # keeps the actor alive
    # The actors get a connector (a plain, picklable function), as the pool does for the real store.
    return SleepFitActor, functools.partial(DictStoreClient, name), owner


def make_pool(delay: float = 0.05, **overrides) -> tuple[FittingPool, object]:
    actor_class, connect, store = stand_ins(delay)
    settings = {"num_actors": 2, "cpus_per_actor": 0.5, "max_inflight_per_actor": 2, **overrides}
    pool = FittingPool(FittingConfig(**settings), None, connect, actor_class=actor_class)
    pool.wait_ready(timeout=120)
    return pool, store


def test_submit_never_blocks_and_drops_beyond_two_batches_per_actor():
    pool, store = make_pool(delay=1.5)
    try:
        start = time.monotonic()
        accepted = [pool.submit(make_batch(f"d{i}")) for i in range(6)]
        elapsed = time.monotonic() - start
        assert accepted == [True] * 4 + [False] * 2
        assert elapsed < 1.0, f"submit waited {elapsed:.2f} s"
        stats = pool.stats()
        assert stats["queue_depth"] == 4 and stats["dropped"] == 2 * B
        assert pool.wait_idle(timeout=60)
        stats = pool.stats()
        assert stats["fitted"] == stats["accepted"] == 4 * B
        assert stats["queue_depth"] == 0 and stats["improved"] == 0
        assert len(store.losses()) == 4 * B
    finally:
        pool.shutdown()


def test_blocking_submit_waits_for_room_and_drops_nothing():
    pool, store = make_pool(delay=0.3)
    try:
        assert all(pool.submit(make_batch(f"b{i}"), block=True) for i in range(7))
        assert pool.wait_idle(timeout=60)
        stats = pool.stats()
        assert stats["dropped"] == 0 and stats["fitted"] == 7 * B == len(store.losses())
        assert stats["fits_per_s"] > 0
    finally:
        pool.shutdown()


def test_improved_counts_better_fits_of_keys_already_stored():
    pool, store = make_pool()
    try:
        pool.submit(make_batch("k", loss=10.0), block=True)
        pool.wait_idle(timeout=60)
        pool.submit(make_batch("k", loss=5.0), block=True)  # better: accepted and improved
        pool.wait_idle(timeout=60)
        pool.submit(make_batch("k", loss=7.0), block=True)  # worse than 5: refused
        pool.wait_idle(timeout=60)
        stats = pool.stats()
        assert stats["fitted"] == 3 * B
        assert stats["accepted"] == 2 * B and stats["improved"] == B
        assert stats["accepted_frac"] == pytest.approx(2 / 3)
        assert stats["improved_frac"] == pytest.approx(1 / 3)
        assert set(store.losses().values()) == {5.0}
    finally:
        pool.shutdown()


def test_errors_and_failed_fits_come_back_as_values():
    pool, store = make_pool()
    try:
        pool.submit(make_batch("boom"), block=True)
        pool.submit(make_batch("fail"), block=True)
        pool.submit(make_batch("fine"), block=True)
        assert pool.wait_idle(timeout=60)
        stats = pool.stats()
        assert stats["errors"] == B and "stand-in fit exploded" in stats["last_error"]
        assert stats["failed"] == B and stats["fitted"] == 2 * B
        assert sorted(store.losses()) == sorted(f"fine/{i}" for i in range(B))
        assert pool.health() == [True, True]
    finally:
        pool.shutdown()


def test_staleness_is_collection_step_minus_prediction_step():
    pool, _ = make_pool()
    try:
        pool.submit(make_batch("s", step=3), block=True)
        pool.set_step(10)
        pool.wait_idle(timeout=60)
        assert pool.stats()["staleness_steps"] == 7
    finally:
        pool.shutdown()


def test_health_ping_answers_while_a_batch_is_fitting():
    pool, _ = make_pool(delay=3.0)
    try:
        pool.submit(make_batch("h0"))
        pool.submit(make_batch("h1"))
        time.sleep(0.3)
        start = time.monotonic()
        assert pool.health(timeout=2.0) == [True, True]
        assert time.monotonic() - start < 2.0
    finally:
        pool.shutdown()


def test_killed_actor_restarts_and_its_batches_are_retried_once():
    pool, store = make_pool(delay=1.0)
    try:
        for i in range(4):
            assert pool.submit(make_batch(f"r{i}"))
        time.sleep(0.3)
        ray.kill(pool.actors[0], no_restart=False)
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["retried"] == 2 * B  # the two batches the killed actor held
        assert stats["dropped"] == 0 and stats["fitted"] == 4 * B == len(store.losses())
        assert pool.health(timeout=60) == [True, True]
        assert pool.stats()["restarts"] == 1
    finally:
        pool.shutdown()


def test_without_retries_lost_batches_are_dropped_and_counted():
    pool, store = make_pool(delay=1.0, max_retries=0)
    try:
        for i in range(4):
            assert pool.submit(make_batch(f"x{i}"))
        time.sleep(0.3)
        ray.kill(pool.actors[1], no_restart=False)
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["retried"] == 0 and stats["dropped"] == 2 * B
        assert stats["fitted"] == 2 * B == len(store.losses())
    finally:
        pool.shutdown()


def test_actor_beyond_max_restarts_is_given_up_and_work_moves_on():
    pool, store = make_pool(delay=0.2, max_restarts=0)
    try:
        ray.kill(pool.actors[0], no_restart=True)
        assert all(pool.submit(make_batch(f"p{i}"), block=True, timeout=60) for i in range(4))
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["alive_actors"] == 1 and stats["dropped"] == 0
        assert stats["fitted"] == 4 * B == len(store.losses())
        assert pool.health() == [False, True]
    finally:
        pool.shutdown()
