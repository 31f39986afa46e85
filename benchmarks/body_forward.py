"""Fast 49-joint path vs the full smplx forward (all 6890 vertices), forward + backward, batch 64, CPU.

Both are timed in the same run, interleaved round by round so machine load hits both alike; the
best round of each is reported, with the ratio. Target: fast path >= 10x faster.

    python benchmarks/body_forward.py [--batch 64] [--rounds 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from spin.body import BodyModel
from spin.body.pose_sampler import sample_body_pose


def _time_once(fn, iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    body = BodyModel.default()
    rng = np.random.default_rng(0)
    pose_np = np.zeros((args.batch, 72), dtype=np.float32)
    pose_np[:, 3:] = sample_body_pose(args.batch, rng)
    pose_np[:, :3] = rng.normal(size=(args.batch, 3))
    pose = torch.as_tensor(pose_np).requires_grad_()
    betas = torch.as_tensor(rng.normal(size=(args.batch, 10)).astype(np.float32)).requires_grad_()

    def full() -> None:
        body(pose, betas).joints.square().sum().backward()

    def fast() -> None:
        body.joints(pose, betas).square().sum().backward()

    err = (body(pose, betas).joints - body.joints(pose, betas)).abs().max().item()
    for fn in (full, fast):  # warm-up
        fn()
        fn()
    best_full, best_fast = float("inf"), float("inf")
    for _ in range(args.rounds):
        best_full = min(best_full, _time_once(full, 2))
        best_fast = min(best_fast, _time_once(fast, 10))
    print(
        f"body forward+backward, batch {args.batch}, CPU, {args.threads} threads "
        f"(best of {args.rounds} rounds)"
    )
    print(f"  full smplx forward (6890 vertices): {best_full:8.2f} ms/call")
    print(f"  fast joints path (49 joints):        {best_fast:8.2f} ms/call")
    print(f"  speed-up: {best_full / best_fast:.1f}x  (target >= 10x); max joint difference {err:.1e} m")
    load = os.getloadavg()[0]
    print(f"  machine: {os.cpu_count()} CPUs, load average {load:.1f}; a busy machine slows small ops most")


if __name__ == "__main__":
    main()
