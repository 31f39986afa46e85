"""Data-parallel ranks and remote fit reads, measured side by side in one run.

    .venv/bin/python benchmarks/distributed.py                    # 1 vs 2 gloo ranks on CPU, tiny
    .venv/bin/python benchmarks/distributed.py --ranks 4 --model regressor --batch 16 --steps 50

1. Training throughput (samples/s over all ranks) for 1 rank and for N ranks in one gloo (CPU) or
   nccl (`--device cuda`, one GPU per rank) process group, each rank stepping DDP on its own shard
   of the same data (`ResumableSampler`). `--model tiny` is an MLP (shows the per-step overhead of
   the process group), `--model regressor` the project's regressor (resnet18 at 64 px by default).
   On a machine with fewer cores than ranks the N-rank row shows correctness and overhead only.
2. Fit-read latency per batch of `--read-batch` keys: a local LMDB read (`StoreFitReader`, what
   ranks on the store's node do) against a read through the store writer actor (`RemoteFitReader`,
   what ranks on other nodes do), on a local Ray.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)  # this folder's store.py would shadow the `store` package

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _model(kind: str, img_res: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "tiny":
        return torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 85))
    from spin.body import load_mean_params, resolve_body_files
    from spin.models import build_regressor
    from spin.models.regressor import ModelConfig

    files = resolve_body_files()
    return build_regressor(ModelConfig(backbone="resnet18", img_res=img_res, hidden=256),
                           load_mean_params(files.mean_params))


def _inputs(kind: str, count: int, img_res: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    shape = (count, 64) if kind == "tiny" else (count, 3, img_res, img_res)
    return torch.randn(shape, generator=generator)


def _loss(kind: str, out) -> torch.Tensor:
    if kind == "tiny":
        return out.square().mean()
    return out.rotmat.square().mean() + out.betas.square().mean() + out.cam.square().mean()


def _rank(rank: int, world: int, init: str, args: argparse.Namespace, results: str) -> None:
    from spin.distributed.ddp import wrap_model
    from spin.training.sampler import ResumableSampler

    torch.set_num_threads(args.threads)
    device = torch.device(f"cuda:{rank}" if args.device == "cuda" else "cpu")
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend, init_method=init, rank=rank, world_size=world,
                                             timeout=timedelta(seconds=300))
    try:
        model = wrap_model(_model(args.model, args.img_res).to(device), device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        data = _inputs(args.model, 256, args.img_res)
        draws = iter(ResumableSampler(len(data), seed=0, rank=rank, world_size=world))

        def step() -> None:
            batch = data[[next(draws)[0] for _ in range(args.batch)]].to(device, non_blocking=True)
            loss = _loss(args.model, model(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        for _ in range(args.warmup):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        Path(results, f"rank{rank}").write_text(str(time.perf_counter() - started))
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()


def training_rate(world: int, args: argparse.Namespace) -> float:
    """Samples per second over all ranks (the slowest rank's time)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        init = f"file://{tmp}/rendezvous"
        if world == 1:
            _rank(0, 1, init, args, tmp)
        else:
            mp.start_processes(_rank, args=(world, init, args, tmp), nprocs=world, start_method="spawn")
        seconds = max(float(Path(tmp, f"rank{r}").read_text()) for r in range(world))
    return world * args.batch * args.steps / seconds


def read_latencies(args: argparse.Namespace) -> dict[str, float]:
    """Median milliseconds per batch read: local LMDB vs through the store writer actor."""
    from fitting_workers.runtime import start_ray, stop_ray
    from fitting_workers.store_actor import open_store_writer
    from spin.distributed.remote_reads import RemoteFitReader
    from spin.training.supervision import StoreFitReader

    rng = np.random.default_rng(0)
    size = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fits.lmdb"
        started = start_ray(num_cpus=1)
        try:
            writer = open_store_writer(path)
            writer.declare_dataset("bench", size)
            for start in range(0, size, 2000):
                keys = [f"bench/{i}" for i in range(start, start + 2000)]
                writer.put_if_better(keys, rng.normal(size=(2000, 72)), rng.normal(size=(2000, 10)),
                                     rng.normal(size=(2000, 3)), rng.uniform(1, 100, 2000))
            readers = {"local LMDB": StoreFitReader(path), "store actor": RemoteFitReader(writer)}
            out = {}
            for name, reader in readers.items():
                times = []
                for _ in range(args.reads):
                    keys = [f"bench/{i}" for i in rng.integers(0, size, args.read_batch)]
                    begin = time.perf_counter()
                    fits = reader.read(keys)
                    times.append(time.perf_counter() - begin)
                    assert fits["present"].all()
                out[name] = 1000 * float(np.median(times))
            writer.kill()
        finally:
            if started:
                stop_ray()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--model", choices=("tiny", "regressor"), default="tiny")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--img-res", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16, help="per-rank batch")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--read-batch", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    one = training_rate(1, args)
    many = training_rate(args.ranks, args)
    reads = read_latencies(args)
    print(f"training ({args.model}, {args.device}, per-rank batch {args.batch}, {args.steps} steps)")
    print(f"  {'ranks':>5}  {'samples/s':>10}  {'vs 1 rank':>9}")
    print(f"  {1:>5}  {one:>10.1f}  {1.0:>9.2f}")
    print(f"  {args.ranks:>5}  {many:>10.1f}  {many / one:>9.2f}")
    print(f"fit reads per batch of {args.read_batch} keys (median of {args.reads})")
    local, remote = reads["local LMDB"], reads["store actor"]
    print(f"  local LMDB {local:.2f} ms   store actor {remote:.2f} ms   ratio {remote / local:.1f}x")


if __name__ == "__main__":
    main()
