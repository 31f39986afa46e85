"""Fitting actors: fits/s with 1 vs 2 actors, and the queue's per-job overhead vs SMPLify in-process.

One run, the same synthetic people (known parameters, perturbed starts) and the same SMPLify
settings everywhere, each actor and the in-process fit with the same torch threads:
  1. SMPLify called directly in this process, batch by batch (no Ray, no store);
  2. the `FittingPool` with 1 actor, batches submitted with `submit(block=True)`, every batch
     written to a real store writer actor (LMDB) by the actor, as in training;
  3. the same with 2 actors.
Printed side by side: seconds, fits/s, the scaling ratio 2 actors / 1 actor, and the per-job
overhead of the pool (wall time per job with 1 actor minus the in-process time per job), with the
time SMPLify itself took inside the fitters (summed over actors: with 2 actors on a small machine
each fit slows down as they share cores) and the actors' store writes, so that a slower fit in
the actor process is told apart from queueing and transfer costs.

    .venv/bin/python benchmarks/workers.py                    # 512 people, batch 32
    .venv/bin/python benchmarks/workers.py --people 128       # quicker
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


def run_direct(files, smplify_config: SmplifyConfig, batches: list[FitJobBatch], threads: int) -> dict:
    torch.set_num_threads(threads)
    smplify = SMPLify(BodyModel.from_files(files), files.prior, smplify_config)
    warm = batches[0]
    smplify.fit(warm.keypoints[:2], warm.pose[:2], warm.betas[:2], warm.cam_t[:2])
    start = time.perf_counter()
    losses = [smplify.fit(b.keypoints, b.pose, b.betas, b.cam_t).loss for b in batches]
    seconds = time.perf_counter() - start
    n = sum(len(b) for b in batches)
    return {"name": "in-process SMPLify", "seconds": seconds, "fits_per_s": n / seconds,
            "mean_loss": float(np.concatenate(losses).mean()), "write_s": 0.0, "fit_s": seconds}


def run_pool(files, config: FittingConfig, batches: list[FitJobBatch], store_dir: str) -> dict:
    from fitting_workers.store_actor import open_store_writer  # after main() fixed sys.path

    writer = open_store_writer(os.path.join(store_dir, f"fits_{config.num_actors}"))
    write_seconds, fit_seconds = [], []

    def record(outcome) -> None:
        write_seconds.append(outcome.write_seconds)
        fit_seconds.append(outcome.fit_seconds)

    pool = FittingPool(config, files, writer, on_outcome=record)
    try:
        pool.wait_ready()
        # Warm every actor (first-call costs of torch) before timing, as in-process does.
        warm = batches[0]
        for index in range(config.num_actors):
            keys = [f"warm/{index}/{i}" for i in range(2)]
            pool.submit(FitJobBatch(keys=keys, keypoints=warm.keypoints[:2], pose=warm.pose[:2],
                                    betas=warm.betas[:2], cam_t=warm.cam_t[:2]), block=True)
        pool.wait_idle()
        write_seconds.clear()
        fit_seconds.clear()
        before = pool.stats()
        start = time.perf_counter()
        for batch in batches:
            pool.submit(batch, block=True)
        pool.wait_idle()
        seconds = time.perf_counter() - start
        stats = pool.stats()
    finally:
        pool.shutdown()
        writer.kill()
    n = sum(len(b) for b in batches)
    fitted = stats["fitted"] - before["fitted"]
    assert fitted == n and stats["dropped"] == 0, stats
    return {"name": f"pool, {config.num_actors} actor{'s' if config.num_actors > 1 else ''}",
            "seconds": seconds, "fits_per_s": n / seconds, "mean_loss": stats["mean_loss"],
            "write_s": float(np.sum(write_seconds)), "fit_s": float(np.sum(fit_seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads in-process and per actor")
    parser.add_argument("--iters-body", type=int, default=None, help="SMPLify body iterations")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # Run as a script, this folder is sys.path[0], and benchmarks/store.py would shadow `store`.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]
    console = Console(width=120)

    files = resolve_body_files()
    problems = make_problems(BodyModel.from_files(files), args.people, seed=args.seed)
    smplify_config = SmplifyConfig(iters_body=args.iters_body)
    rows = []
    console.print(f"in-process SMPLify on {args.people} people …")
    direct_batches = job_batches(problems, args.batch_size, "direct")
    rows.append(run_direct(files, smplify_config, direct_batches, args.threads))
    with tempfile.TemporaryDirectory(prefix="spin-bench-workers-") as store_dir, \
            ray_session(num_cpus=max(2, os.cpu_count() or 1)):
        for actors in (1, 2):
            console.print(f"fitting pool with {actors} actor(s) …")
            config = FittingConfig(num_actors=actors, cpus_per_actor=1.0, torch_threads=args.threads,
                                   batch_size=args.batch_size, smplify=smplify_config)
            pool_batches = job_batches(problems, args.batch_size, f"p{actors}")
            rows.append(run_pool(files, config, pool_batches, store_dir))

    n = args.people
    title = (f"fitting workers · {n} synthetic people · batch {args.batch_size} · {args.threads} torch "
             f"thread(s) per fitter · {os.cpu_count()} CPU cores")
    table = Table(title=title)
    for column in ("fitter", "seconds", "fits/s", "wall ms/job", "SMPLify ms/job in fitter",
                   "store write ms/job", "mean loss"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["name"], f"{row['seconds']:.2f}", f"{row['fits_per_s']:.1f}",
                      f"{1000 * row['seconds'] / n:.2f}", f"{1000 * row['fit_s'] / n:.2f}",
                      f"{1000 * row['write_s'] / n:.3f}", f"{row['mean_loss']:.2f}")
    console.print(table)
    direct, one, two = rows
    overhead_ms = 1000 * (one["seconds"] - direct["seconds"]) / n
    console.print(f"scaling 2 actors / 1 actor: [bold]{two['fits_per_s'] / one['fits_per_s']:.2f}×[/] "
                  f"(ideal 2×; this machine has {os.cpu_count()} cores shared with the driver and the store)")
    share = 100 * overhead_ms / (1000 * direct["seconds"] / n)
    console.print(f"pool overhead per job vs in-process (1 actor): [bold]{overhead_ms:.2f} ms[/] "
                  f"({share:.1f}% of an in-process fit), of which store writes in the actor "
                  f"{1000 * one['write_s'] / n:.2f} ms")


if __name__ == "__main__":
    main()
