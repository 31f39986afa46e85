"""Shared fixtures of the worker tests: Ray sessions that leave no process behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

RAY_PROCESS_MARKS = ("raylet", "gcs_server", "ray::", "ray/_private", "ray/dashboard")


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every live process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        table[int(entry.name)] = (int(ppid), state, cmdline)
    return table


def ray_descendants(root: int | None = None) -> list[tuple[int, str]]:
    """(pid, command) of live Ray processes descending from `root` (default: this test process).

    Other sessions' Ray on this shared machine is not ours, hence descendants rather than `pgrep`.
    """
    table = _processes()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], list(children.get(root or os.getpid(), []))
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        _, state, cmdline = table[pid]
        if state != "Z" and any(mark in cmdline for mark in RAY_PROCESS_MARKS):
            found.append((pid, cmdline[:80]))
    return found


def assert_no_ray_processes(timeout: float = 20.0) -> None:
    """Every Ray process this test process started has exited (Ray stops them asynchronously)."""
    deadline = time.monotonic() + timeout
    left = ray_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = ray_descendants()
    assert not left, f"stray Ray processes after the test: {left}"


@pytest.fixture(scope="module")
def local_ray():
    """A local 2-CPU Ray for a test module; stopped afterwards with no process left behind."""
    import torch

    torch.set_num_threads(1)
    from fitting_workers.runtime import start_ray, stop_ray

    started = start_ray(num_cpus=2)
    assert started, "Ray was already running in this process"
    yield
    stop_ray()
    assert_no_ray_processes()


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """24 synthetic people in SPIN's format, plus INIT.npz with perturbed starts.

    The box is the crop itself (center 112, scale 224/200), so image pixels are crop pixels.
    Returns (data.npz, init.npz, problems).
    """

    from fitting_workers.smplify.synthetic import make_problems, save_problems
    from spin.body import BodyModel
    from spin.body.files import resolve_body_files

    body = BodyModel.from_files(resolve_body_files())
    problems = make_problems(body, 24, seed=5, missing_fraction=0.0)
    data, init = save_problems(problems, tmp_path_factory.mktemp("workers_data"))
    return data, init, problems


@pytest.fixture
def assert_ray_stopped():
    """The check that every Ray process this test process started has exited."""
    return assert_no_ray_processes
