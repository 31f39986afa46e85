"""Shared helpers of the distributed tests: spawned gloo process groups that leave nothing behind."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rank_programs import mapped_files  # noqa: F401 - the tests' home of it is rank_programs

sys.path.insert(0, str(Path(__file__).parent))  # ranks spawned by these tests import rank_programs
TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path):
    """A module of another test folder (its conftest or test file), imported under its own name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The worker tests' Ray process checks and their two-node `ray start` helpers, reused as they are.
workers_conftest = _load("workers_conftest", TESTS / "workers" / "conftest.py")
cluster_helpers = _load("workers_test_cluster", TESTS / "workers" / "test_cluster.py")


@pytest.fixture
def ray_local(monkeypatch):
    """A Ray started by the code under test (or its subprocesses) is a fresh local one, one thread per
    library; afterwards none is running and no Ray process of this test remains."""
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    import ray

    assert not ray.is_initialized(), "Ray left running"
    workers_conftest.assert_no_ray_processes()


def run_ranks(fn, world_size: int, args: tuple, timeout_s: float = 240.0) -> None:
    """Run `fn(rank, *args)` in `world_size` spawned processes; fail (and kill them) past `timeout_s`."""
    import torch.multiprocessing as mp

    context = mp.start_processes(fn, args=args, nprocs=world_size, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout_s
    try:
        while not context.join(timeout=1.0):
            assert time.monotonic() < deadline, f"ranks still running after {timeout_s:g} s"
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
            process.join(5)
        assert not any(p.is_alive() for p in context.processes), "rank processes left behind"


@pytest.fixture
def init_file(tmp_path):
    """A file:// rendezvous for one process group (no TCP port to collide with other users)."""
    path = tmp_path / "rendezvous"
    yield f"file://{path}"
    if path.exists():
        os.unlink(path)


@pytest.fixture(scope="session")
def body_files():
    from spin.body import resolve_body_files

    return resolve_body_files()


def put_fits(store, keys: list[str], loss: float | np.ndarray, seed: int = 0, round: int = 1):
    """Write fits for `keys` (random canonical pose/betas, given losses) through `store`."""
    rng = np.random.default_rng(seed)
    count = len(keys)
    return store.put_if_better(keys, rng.normal(0, 0.1, (count, 72)).astype(np.float32),
                               rng.normal(0, 0.5, (count, 10)).astype(np.float32),
                               np.tile(np.float32([0, 0, 50]), (count, 1)),
                               np.broadcast_to(np.asarray(loss, np.float64), (count,)).copy(), round=round)


def collated_batch(keys: list[str]) -> dict:
    """What the training loader yields without fits for `keys` (no flip, no rotation, no GT)."""
    import torch

    count = len(keys)
    return {"key": list(keys), "flip": torch.zeros(count, dtype=torch.bool), "rot": torch.zeros(count),
            "pose": torch.zeros(count, 72), "betas": torch.zeros(count, 10),
            "has_smpl": torch.zeros(count, dtype=torch.bool)}


# The real Trainer on ranks: a tiny synthetic dataset and run (tests/e2e's overrides, smaller).
e2e_conftest = _load("e2e_conftest", TESTS / "e2e" / "conftest.py")
N_TRAIN, STEPS_PER_ROUND, PER_RANK = 20, 3, 2


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    import torch

    from spin.body import BodyModel
    from spin.data.synthetic import synthesize_dataset

    torch.set_num_threads(1)
    return synthesize_dataset(tmp_path_factory.mktemp("ranks_synth"), BodyModel.default(), n_train=N_TRAIN,
                              n_test=4, image_size=32, seed=5, gt_fraction=0.25, progress=False)


def rank_overrides(data, run_dir: Path, mode: str, **extra) -> list[str]:
    """key=value overrides of the tiny run on 2 ranks (what a user would type after `spin train`)."""
    values = {"distributed.num_workers": 2, "distributed.cpus_per_worker": 0.5, "distributed.timeout_s": 300,
              "fitting.cpus_per_actor": 0.5, "fitting.batch_size": PER_RANK, "data.batch_size": PER_RANK,
              "rounds.steps_per_round": STEPS_PER_ROUND, "rounds.overlay_images": 0,
              "rounds.eval_batch_size": 4, "rounds.drain_fits_s": 60, "distributed.max_failures": 0, **extra}
    return e2e_conftest._e2e_overrides(data, run_dir, mode, **values)


def rank_config(data, run_dir: Path, mode: str, **extra):
    """The tiny run's TrainConfig on 2 ranks, loaded as `spin train` loads it."""
    from spin.cli.train import _default_config_path
    from spin.config import TrainConfig
    from spin.config_loading import load_config

    return load_config(TrainConfig, _default_config_path(), rank_overrides(data, run_dir, mode, **extra))
