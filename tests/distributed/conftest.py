"""Shared helpers of the distributed tests: spawned gloo process groups that leave nothing behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ranks spawned by these tests import rank_programs


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
