"""A whole 2-rank `spin train` run (the driver, the local Ray it started, both Ray Train ranks) killed
with SIGKILL in round 2 and continued with `spin train --resume` ends in the state of an uninterrupted
2-rank run of the same seed: same step, weights, optimiser and per-rank RNG states, each round's
metrics, and the store's rounds table written once per round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import e2e_conftest, rank_overrides, workers_conftest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
pytest.importorskip("ray.train", reason="Ray Train is not installed (pip install 'ray[train]')")


def _start_time(pid: int) -> str | None:
    """The kernel's start time of live process `pid` (None once it has exited): with the pid, it
    names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is the state, fields[19] the start time
    return None if fields[0] in "ZX" else fields[19]


class StartedProcesses:
    """A subprocess started in a session of its own and every process seen descending from it
    (remembered by pid and start time, so those re-parented when their parent dies stay known)."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.seen = process, {}

    def update(self) -> None:
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in workers_conftest._processes().items():
            children.setdefault(ppid, []).append(pid)
        stack = [self.process.pid]
        while stack:
            pid = stack.pop()
            start = _start_time(pid)
            if start is not None:
                self.seen.setdefault(pid, start)
                stack += children.get(pid, [])

    def alive(self) -> list[int]:
        return [pid for pid, start in self.seen.items() if _start_time(pid) == start]

    def kill(self) -> None:
        """SIGKILL the session's process group (the driver and all it started there), then any
        process seen that left the group; reap the driver."""
        self.update()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in self.alive():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)

    def assert_gone(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not self.alive(), f"processes of `spin train` left behind: {self.alive()}"


def _spin_train(args: list[str], log: Path) -> StartedProcesses:
    """`spin train ARGS` as a user starts it, in a new session (its Ray and ranks join its group)."""
    with open(log, "w") as out:  # a file, not a pipe: a full pipe would stall the run
        process = subprocess.Popen([sys.executable, "-m", "spin.cli.main", "train", *args],
                                   env=e2e_conftest._run_env(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return StartedProcesses(process)


def _watch(runs: list[StartedProcesses], done, what: str, timeout_s: float) -> None:
    """Poll `done()` until true, noting the runs' processes meanwhile; fail past `timeout_s`."""
    deadline, next_walk = time.monotonic() + timeout_s, 0.0
    while not done():
        if time.monotonic() >= next_walk:  # a walk of /proc costs CPU: once a second
            for run in runs:
                run.update()
            next_walk = time.monotonic() + 1.0
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:g} s"
        time.sleep(0.02)


def test_a_killed_two_rank_run_resumes_to_the_state_of_an_uninterrupted_one(tmp_path, tiny_data, ray_local):
    from store import FitsStore

    # fitting.mode=off: the comparison is exact, as async fitting is not deterministic (which fit lands
    # before which step depends on scheduling); sync is refused on several ranks (N store writers).
    extra = {"rounds.num_rounds": 2, "rounds.steps_per_round": 4, "rounds.checkpoint_every": 2}
    total = 2 * 4
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    logs = {name: tmp_path / f"{name}.log" for name in ("straight", "killed", "resumed")}
    first_round, last = killed_dir / "round_001" / "metrics.json", killed_dir / "last.pt"

    def round_one_checkpointed() -> bool:  # round 1 recorded, and the last.pt written after it
        assert killed.process.poll() is None, "the run ended before the kill:\n" + logs["killed"].read_text()
        return (first_round.is_file() and last.is_file()
                and last.stat().st_mtime_ns >= first_round.stat().st_mtime_ns)

    runs = []
    try:
        # The uninterrupted run goes beside the one to kill: the two Ray start-ups overlap.
        runs.append(straight := _spin_train(rank_overrides(tiny_data, straight_dir, "off", **extra),
                                            logs["straight"]))
        runs.append(killed := _spin_train(rank_overrides(tiny_data, killed_dir, "off", **extra),
                                          logs["killed"]))
        _watch(runs, round_one_checkpointed, "round 1's last.pt", 400)
        killed.kill()  # in round 2: the driver, its Ray and both ranks at once
        killed.assert_gone()
        interrupted_at = torch.load(last, weights_only=False)["step"]
        assert total // 2 <= interrupted_at < total
        with FitsStore(killed_dir / "fits.lmdb", readonly=True) as store:
            recorded = store.rounds()
        assert [r["round"] for r in recorded] == [1]

        runs.append(resumed := _spin_train(["--resume", str(killed_dir)], logs["resumed"]))
        _watch(runs, lambda: straight.process.poll() is not None and resumed.process.poll() is not None,
               "end of both runs", 400)
        for run, name in ((straight, "straight"), (resumed, "resumed")):
            assert run.process.returncode == 0, logs[name].read_text()[-4000:]
            run.assert_gone()
    finally:
        for run in runs:
            if run.process.poll() is None or run.alive():
                run.kill()
    a = torch.load(straight_dir / "last.pt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["step"] == b["step"] == total and b["world_size"] == 2
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for ra, rb in zip(a["rng_per_rank"], b["rng_per_rank"], strict=True):
        assert torch.equal(ra["torch"], rb["torch"])
    for number in (1, 2):
        ma = json.loads((straight_dir / f"round_{number:03d}" / "metrics.json").read_text())
        mb = json.loads((killed_dir / f"round_{number:03d}" / "metrics.json").read_text())
        assert (ma["step"], ma["mpjpe"], ma["pa_mpjpe"]) == (mb["step"], mb["mpjpe"], mb["pa_mpjpe"])
    with FitsStore(killed_dir / "fits.lmdb", readonly=True) as store:
        after = store.rounds()
    assert [r["round"] for r in after] == [1, 2]
    assert after[0] == recorded[0]  # round 1 was written once, before the kill, and not again
