"""Fitting actors: fits/s with 1 vs 2 actors, and the queue's per-job overhead vs SMPLify in-process.

One run, the same synthetic people (known parameters, perturbed starts) and the same SMPLify
settings everywhere, each actor and the in-process fit with the same torch threads:
  - SMPLify called directly in this process, batch by batch (no Ray, no store);
  - the `FittingPool` with 1 actor, batches submitted with `submit(block=True)`, every batch
    written by the actor to a real store writer actor (LMDB), as in training;
  - the same with 2 actors.
The three are measured in turn, `--repeats` times (best of each kept), so that load from other
processes on a shared machine hits them alike. Printed side by side: seconds, fits/s, the
scaling ratio 2 actors / 1 actor, and the pool's per-job overhead, two ways: wall time per job
with 1 actor minus SMPLify's own time inside that actor (same run: the cost of the queue, Ray's
transfers and the store write), and minus the in-process time per job.

    .venv/bin/python benchmarks/workers.py                    # 512 people, batch 32, 3 repeats
    .venv/bin/python benchmarks/workers.py --people 128 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from fitting_workers.config import FittingConfig
from fitting_workers.jobs import FitJobBatch
from fitting_workers.pool import FittingPool
from fitting_workers.runtime import ray_session
from fitting_workers.smplify import SMPLify, SmplifyConfig
from fitting_workers.smplify.synthetic import SyntheticProblems, make_problems
from spin.body import BodyModel
from spin.body.files import resolve_body_files


def job_batches(problems: SyntheticProblems, batch_size: int, tag: str) -> list[FitJobBatch]:
    """Fresh keys `<tag>/<i>` per measurement, so every store write is a first fit."""
    return [
        FitJobBatch(
            keys=[f"{tag}/{i}" for i in range(lo, min(lo + batch_size, len(problems)))],
            keypoints=problems.keypoints[lo:lo + batch_size],
            pose=problems.init_pose[lo:lo + batch_size],
            betas=problems.init_betas[lo:lo + batch_size],
            cam_t=problems.init_cam_t[lo:lo + batch_size],
        )
        for lo in range(0, len(problems), batch_size)
    ]


class InProcess:
    name = "in-process SMPLify"

    def __init__(self, files, smplify_config: SmplifyConfig, threads: int) -> None:
        torch.set_num_threads(threads)
        self.smplify = SMPLify(BodyModel.from_files(files), files.prior, smplify_config)

    def measure(self, batches: list[FitJobBatch]) -> dict:
        start = time.perf_counter()
        losses = [self.smplify.fit(b.keypoints, b.pose, b.betas, b.cam_t).loss for b in batches]
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "fit_s": seconds, "write_s": 0.0,
                "mean_loss": float(np.concatenate(losses).mean())}

    def close(self) -> None:
        pass


class Pooled:
    def __init__(self, files, config: FittingConfig, store_path: str) -> None:
        from fitting_workers.store_actor import open_store_writer  # after main() fixed sys.path

        self.name = f"pool, {config.num_actors} actor{'s' if config.num_actors > 1 else ''}"
        self.writer = open_store_writer(store_path)
        self.outcomes = []
        self.pool = FittingPool(config, files, self.writer, on_outcome=self.outcomes.append)
        self.pool.wait_ready()

    def measure(self, batches: list[FitJobBatch]) -> dict:
        self.outcomes.clear()
        before = self.pool.stats()
        start = time.perf_counter()
        for batch in batches:
            self.pool.submit(batch, block=True)
        self.pool.wait_idle()
        seconds = time.perf_counter() - start
        stats = self.pool.stats()
        n = sum(len(b) for b in batches)
        assert stats["fitted"] - before["fitted"] == n and stats["dropped"] == 0, stats
        return {"seconds": seconds, "fit_s": sum(o.counts.fit_seconds for o in self.outcomes),
                "write_s": sum(o.counts.write_seconds for o in self.outcomes),
                "mean_loss": sum(o.counts.loss_sum for o in self.outcomes) / n}

    def close(self) -> None:
        self.pool.shutdown()
        self.writer.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in-process and per actor")
    parser.add_argument("--iters-body", type=int, default=None, help="SMPLify body iterations")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Run as a script, this folder is sys.path[0], and benchmarks/store.py would shadow `store`.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    console = Console(width=120)

    files = resolve_body_files()
    problems = make_problems(BodyModel.from_files(files), args.people, seed=args.seed)
    smplify_config = SmplifyConfig(iters_body=args.iters_body)
    n = args.people
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="spin-bench-workers-") as store_dir, \
            ray_session(num_cpus=max(3, cores)):
        fitters = [InProcess(files, smplify_config, args.threads)]
        for actors in (1, 2):
            config = FittingConfig(num_actors=actors, cpus_per_actor=1.0, torch_threads=args.threads,
                                   batch_size=args.batch_size, smplify=smplify_config)
            fitters.append(Pooled(files, config, os.path.join(store_dir, f"fits_{actors}")))
        try:
            for index, fitter in enumerate(fitters):  # first-call costs of torch, in every process
                fitter.measure(job_batches(problems.slice(slice(0, 8)), 2, f"warm{index}"))
            best: dict[str, dict] = {}
            for repeat in range(args.repeats):
                for index, fitter in enumerate(fitters):
                    console.print(f"repeat {repeat + 1}/{args.repeats}: {fitter.name} on {n} people …")
                    row = fitter.measure(job_batches(problems, args.batch_size, f"r{repeat}f{index}"))
                    if fitter.name not in best or row["seconds"] < best[fitter.name]["seconds"]:
                        best[fitter.name] = row
        finally:
            for fitter in fitters:
                fitter.close()

    title = (f"fitting workers · {n} synthetic people · batch {args.batch_size} · {args.threads} torch "
             f"thread(s) per fitter · {cores} CPU cores · best of {args.repeats}")
    table = Table(title=title)
    for column in ("fitter", "seconds", "fits/s", "wall ms/job", "SMPLify ms/job in fitter",
                   "store write ms/job", "mean loss"):
        table.add_column(column, justify="right")
    for name, row in best.items():
        table.add_row(name, f"{row['seconds']:.2f}", f"{n / row['seconds']:.1f}",
                      f"{1000 * row['seconds'] / n:.2f}", f"{1000 * row['fit_s'] / n:.2f}",
                      f"{1000 * row['write_s'] / n:.3f}", f"{row['mean_loss']:.2f}")
    console.print(table)
    direct, one, two = best.values()
    console.print(f"scaling 2 actors / 1 actor: [bold]{one['seconds'] / two['seconds']:.2f}×[/] (ideal 2×; "
                  f"{cores} cores here, shared with the driver, the store writer and other processes)")
    queue_ms = 1000 * (one["seconds"] - one["fit_s"]) / n
    direct_ms = 1000 * (one["seconds"] - direct["seconds"]) / n
    write_ms = 1000 * one["write_s"] / n
    console.print(f"pool overhead per job (1 actor): [bold]{queue_ms:.2f} ms[/] wall beyond SMPLify's own "
                  f"time in the actor (of which {write_ms:.2f} ms store write); {direct_ms:+.2f} ms vs "
                  f"in-process SMPLify ({1000 * direct['seconds'] / n:.2f} ms/job)")

if __name__ == "__main__":
    main()
