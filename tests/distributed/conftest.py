"""Shared helpers of the distributed tests: spawned gloo process groups that leave nothing behind."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

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


def mapped_files(name: str) -> list[str]:
    """Files named `name` that this process has open or memory-mapped (LMDB maps data.mdb)."""
    hits = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith(name):
            hits.append(target)
    hits += [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
             if line.endswith(name)]
    return hits
