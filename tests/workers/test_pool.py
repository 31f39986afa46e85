"""Queue, backpressure, retries and health of `FittingPool`, on real Ray with a stand-in fit.

The stand-in replaces only SMPLify (a sleep that returns the initial pose) and the LMDB store (a
dict in a Ray actor with the same put-if-better rule), so these tests run in seconds; the real
SMPLify and store are exercised by test_fits_init_e2e.py and test_fault.py. Tests that leave the
actors intact share one pool and compare its counters before and after; tests that kill actors
make their own.
"""

from __future__ import annotations

import functools
import time
import uuid

import numpy as np
import pytest
import ray

from fitting_workers.actor import FittingActor
from fitting_workers.config import FittingConfig
from fitting_workers.jobs import FitJobBatch
from fitting_workers.pool import FittingPool
from fitting_workers.smplify import FitResult
from spin.errors import UserError
from store import PutResult

pytestmark = pytest.mark.usefixtures("local_ray")
B = 4
COUNTERS = ("submitted", "fitted", "failed", "accepted", "improved", "dropped", "retried", "errors")


def make_batch(tag: str, n: int = B, step: int = 0, loss: float = 10.0, seconds: float = 0.05) -> FitJobBatch:
    """Keys `<tag>/<i>`. The stand-in fit sleeps keypoints[0, 1, 0] seconds and reports
    loss = keypoints[:, 0, 0], so `seconds` and `loss` steer its duration and acceptance."""
    keypoints = np.zeros((n, 49, 3), np.float32)
    keypoints[:, 0, 0] = loss
    keypoints[:, 1, 0] = seconds
    return FitJobBatch(keys=[f"{tag}/{i}" for i in range(n)], keypoints=keypoints,
                       pose=np.zeros((n, 72)), betas=np.zeros((n, 10)), step=step)


def stand_ins():
    """(actor class, store connector, store client), built inside a function so Ray pickles them by value."""

    class SleepFitActor(FittingActor):
        def _build_fitter(self, body_files, config, device):
            def fit(batch):
                time.sleep(float(batch.keypoints[0, 1, 0]))
                if any(key.startswith("boom") for key in batch.keys):
                    raise RuntimeError("stand-in fit exploded")
                n = len(batch)
                return FitResult(
                    pose=batch.pose, betas=batch.betas, cam_t=np.ones((n, 3), np.float32),
                    loss=batch.keypoints[:, 0, 0].copy(),
                    failure=np.array([int(key.startswith("fail")) for key in batch.keys], np.int8),
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
            previous = np.full(len(keys), np.nan)
            for i, key in enumerate(keys):
                if key not in self.loss or loss[i] < self.loss[key]:
                    previous[i] = self.loss.get(key, np.nan)
                    self.loss[key] = float(loss[i])
                    accepted[i] = True
            return PutResult(accepted, previous)

        def losses(self, prefix):
            return {key: value for key, value in self.loss.items() if key.startswith(prefix)}

    class DictStoreClient:
        def __init__(self, name, handle=None):
            self.handle = handle or ray.get_actor(name)

        def get(self, keys):
            return ray.get(self.handle.get.remote(keys))

        def put_if_better(self, *args, **kwargs):
            return ray.get(self.handle.put_if_better.remote(*args, **kwargs))

        def losses(self, prefix=""):
            return ray.get(self.handle.losses.remote(prefix))

    name = f"dict-store-{uuid.uuid4().hex}"
    owner = DictStoreClient(name, DictStore.options(name=name).remote())  # keeps the actor alive
    # The actors get a connector (a plain, picklable function), as the pool does for the real store.
    return SleepFitActor, functools.partial(DictStoreClient, name), owner


def make_pool(**overrides) -> tuple[FittingPool, object]:
    actor_class, connect, store = stand_ins()
    settings = {"num_actors": 2, "cpus_per_actor": 0.5, "max_inflight_per_actor": 2, **overrides}
    pool = FittingPool(FittingConfig(**settings), None, connect, actor_class=actor_class)
    pool.wait_ready(timeout=120)
    return pool, store


@pytest.fixture(scope="module")
def shared_pool():
    pool, store = make_pool()
    yield pool, store
    pool.shutdown()


@pytest.fixture
def pool_and_store(shared_pool):
    """The shared pool, idle; `counts_since()` gives its counters relative to the test's start."""
    pool, store = shared_pool
    assert pool.wait_idle(timeout=60)
    before = pool.stats()

    def counts_since() -> dict:
        now = pool.stats()
        return {name: now[name] - before[name] for name in COUNTERS} | {"now": now}

    return pool, store, counts_since


def test_submit_never_blocks_and_drops_beyond_two_batches_per_actor(pool_and_store):
    pool, store, counts_since = pool_and_store
    start = time.monotonic()
    accepted = [pool.submit(make_batch(f"d{i}", seconds=1.5)) for i in range(6)]
    elapsed = time.monotonic() - start
    assert accepted == [True] * 4 + [False] * 2
    assert elapsed < 1.0, f"submit waited {elapsed:.2f} s"
    counts = counts_since()
    assert counts["now"]["queue_depth"] == 4 and counts["dropped"] == 2 * B
    assert pool.wait_idle(timeout=60)
    counts = counts_since()
    assert counts["fitted"] == counts["accepted"] == 4 * B
    assert counts["now"]["queue_depth"] == 0 and counts["improved"] == 0
    assert len(store.losses("d")) == 4 * B


def test_blocking_submit_waits_for_room_and_drops_nothing(pool_and_store):
    pool, store, counts_since = pool_and_store
    assert all(pool.submit(make_batch(f"b{i}", seconds=0.3), block=True) for i in range(7))
    assert pool.wait_idle(timeout=60)
    counts = counts_since()
    assert counts["dropped"] == 0 and counts["fitted"] == 7 * B == len(store.losses("b"))
    assert counts["now"]["fits_per_s"] > 0


def test_improved_counts_better_fits_of_keys_already_stored(pool_and_store):
    pool, store, counts_since = pool_and_store
    for loss in (10.0, 5.0, 7.0):  # new: accepted; better: accepted and improved; worse: refused
        pool.submit(make_batch("k", loss=loss), block=True)
        pool.wait_idle(timeout=60)
    counts = counts_since()
    assert counts["fitted"] == 3 * B
    assert counts["accepted"] == 2 * B and counts["improved"] == B
    assert set(store.losses("k").values()) == {5.0}


def test_fractions_are_over_the_fitted_jobs(pool_and_store):
    pool, _, _ = pool_and_store
    for loss in (10.0, 5.0, 7.0):  # this test's own work: it must pass run alone
        pool.submit(make_batch("q", loss=loss), block=True)
    assert pool.wait_idle(timeout=60)
    stats = pool.stats()
    assert stats["fitted"] > 0
    assert stats["accepted_frac"] == pytest.approx(stats["accepted"] / stats["fitted"])
    assert stats["improved_frac"] == pytest.approx(stats["improved"] / stats["fitted"])
    assert 0 <= stats["improved_frac"] <= stats["accepted_frac"] <= 1


def test_errors_and_failed_fits_come_back_as_values(pool_and_store):
    pool, store, counts_since = pool_and_store
    for tag in ("boom", "fail", "fine"):
        pool.submit(make_batch(tag), block=True)
    assert pool.wait_idle(timeout=60)
    counts = counts_since()
    assert counts["errors"] == B and "stand-in fit exploded" in counts["now"]["last_error"]
    assert counts["failed"] == B and counts["fitted"] == 2 * B
    assert counts["now"]["failed_by_reason"].get("nonfinite_input", 0) >= B  # failure code 1
    assert sorted(store.losses("f")) == sorted(f"fine/{i}" for i in range(B))
    assert pool.health() == [True, True]


def test_staleness_is_collection_step_minus_prediction_step(pool_and_store):
    pool, _, _ = pool_and_store
    pool.set_step(3)
    pool.submit(make_batch("s", step=3), block=True)
    pool.set_step(10)
    pool.wait_idle(timeout=60)
    stats = pool.stats()
    assert stats["staleness_last_steps"] == 7
    assert 0 < stats["staleness_steps"] <= 7


def test_health_ping_answers_while_a_batch_is_fitting(pool_and_store):
    pool, _, _ = pool_and_store
    pool.submit(make_batch("h0", seconds=3.0))
    pool.submit(make_batch("h1", seconds=3.0))
    time.sleep(0.3)
    start = time.monotonic()
    assert pool.health(timeout=2.0) == [True, True]
    assert time.monotonic() - start < 2.0
    assert pool.stats()["queue_depth"] == 2


def test_killed_actor_restarts_and_its_batches_are_retried_once():
    pool, store = make_pool()
    try:
        for i in range(4):
            assert pool.submit(make_batch(f"r{i}", seconds=1.0))
        time.sleep(0.3)
        ray.kill(pool.actors[0], no_restart=False)
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["retried"] == 2 * B  # the two batches the killed actor held
        assert stats["dropped"] == 0 and stats["fitted"] == 4 * B == len(store.losses())
        assert pool.wait_restarts(timeout=60)
        assert pool.health(timeout=60) == [True, True]
        assert pool.stats()["restarts"] == 1
    finally:
        pool.shutdown()


def test_without_retries_lost_batches_are_dropped_and_counted():
    pool, store = make_pool(max_retries=0)
    try:
        for i in range(4):
            assert pool.submit(make_batch(f"x{i}", seconds=1.0))
        time.sleep(0.3)
        ray.kill(pool.actors[1], no_restart=False)
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["retried"] == 0 and stats["dropped"] == 2 * B
        assert stats["fitted"] == 2 * B == len(store.losses())
    finally:
        pool.shutdown()


def test_actor_beyond_max_restarts_is_given_up_and_work_moves_on():
    pool, store = make_pool(max_restarts=0)
    try:
        ray.kill(pool.actors[0], no_restart=True)
        assert all(pool.submit(make_batch(f"p{i}", seconds=0.2), block=True, timeout=60) for i in range(4))
        assert pool.wait_idle(timeout=120)
        stats = pool.stats()
        assert stats["alive_actors"] == 1 and stats["dropped"] == 0
        assert stats["fitted"] == 4 * B == len(store.losses())
        assert pool.health() == [False, True]
    finally:
        pool.shutdown()


def test_an_actor_that_cannot_start_is_one_user_error():
    class BrokenActor(FittingActor):
        def _build_fitter(self, body_files, config, device):
            raise UserError("model.pkl is not an SMPL file; pass --body-model")

    _, connect, _ = stand_ins()
    config = FittingConfig(num_actors=1, cpus_per_actor=0.5)
    pool = FittingPool(config, None, connect, actor_class=BrokenActor)
    try:
        with pytest.raises(UserError, match="^model.pkl is not an SMPL file"):
            pool.wait_ready(timeout=120)
    finally:
        pool.shutdown()


def test_a_writer_opened_under_its_own_name_is_passed_by_that_name(tmp_path):
    from fitting_workers.pool import store_argument
    from fitting_workers.store_actor import RemoteFitsStore, open_store_writer

    writer = open_store_writer(tmp_path / "store", name=f"custom-{uuid.uuid4().hex[:8]}")
    try:
        argument = store_argument(writer)
        assert isinstance(argument, functools.partial), "a named writer fell back to a pickled handle"
        assert argument.args[1] == writer.path
        connected = argument()
        assert isinstance(connected, RemoteFitsStore) and connected.handle == writer.handle
    finally:
        writer.kill()
