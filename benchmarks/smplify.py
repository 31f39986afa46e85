"""SMPLify default mode vs reference (SPIN's) mode on two independent synthetic test sets, in one run.

Set A: the project's synthetic body model (seed 0), its pose sampler, 1 px keypoint noise, 10%
missing keypoints. Set B, so that nothing is tuned to one set: another synthetic body model (seed 1,
with its own GMM), more extreme poses (the sampler's poses ×1.3, clipped to its joint limits), yaw
up to ±150° (side and back views), self-occlusion (joints behind the pelvis dropped with probability
0.3, plus 5% at random), 2 px noise and a noisier initialisation. Both modes fit the same people from
the same perturbed initialisations, batch by batch interleaved (default, then reference, on each
batch), so a noisy shared machine slows both alike; the speed claim is the ratio, taken on the
process's CPU time (on an oversubscribed machine wall time mostly measures the neighbours; wall-clock
fits/s are printed too). A third column per set runs the default schedule on all the given threads
(the default mode uses one intra-op thread per 512 samples; SPIN's mode uses them all). Printed:
fits/s ratio, mean loss (the stored `fit_quality`), MPJPE and PA-MPJPE (mm, 14 LSP joints).
Target: default ≥ 100× the reference's fits/s with loss, MPJPE and PA-MPJPE no worse on both sets.
Last, the default mode's fits/s at a large batch (1024): on the GPU with CUDA, else on the CPU.

    .venv/bin/python benchmarks/smplify.py               # 64 people per set (reference: minutes)
    .venv/bin/python benchmarks/smplify.py --people 128  # steadier numbers
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

# The project root first: benchmarks/store.py would otherwise shadow the `store` package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fitting_workers.smplify import SMPLify, SmplifyConfig  # noqa: E402
from fitting_workers.smplify.synthetic import SyntheticProblems, make_problems  # noqa: E402
from spin.body import BodyModel  # noqa: E402
from spin.body.files import ensure_synthetic_body, resolve_body_files  # noqa: E402
from spin.evaluation.metrics import mpjpe, pa_mpjpe  # noqa: E402
from spin.joints import LSP14_FROM_GT, NUM_OPENPOSE  # noqa: E402


@dataclass
class TestSet:
    name: str
    body: BodyModel
    prior: object
    problems: SyntheticProblems


def test_sets(people: int, seed: int) -> list[TestSet]:
    """The two independent sets (see the module docstring)."""
    files_a = resolve_body_files()
    body_a = BodyModel.from_files(files_a)
    files_b = ensure_synthetic_body(1)
    body_b = BodyModel.from_files(files_b)
    set_a = make_problems(body_a, people, seed=seed)
    set_b = make_problems(body_b, people, seed=seed + 1, pose_scale=1.3, max_yaw=2.6, keypoint_noise_px=2.0,
                          missing_fraction=0.05, far_side_drop=0.3, pose_noise=0.2)
    return [TestSet("A", body_a, files_a.prior, set_a), TestSet("B", body_b, files_b.prior, set_b)]


def lsp14(body: BodyModel, pose: np.ndarray, betas: np.ndarray) -> torch.Tensor:
    """14 LSP joints `(N, 14, 3)` of the given parameters."""
    with torch.no_grad():
        joints = body.joints(torch.as_tensor(pose), torch.as_tensor(betas))
    return joints[:, NUM_OPENPOSE + torch.as_tensor(LSP14_FROM_GT)]


def summary(test: TestSet, results: list, seconds: float, cpu_seconds: float) -> dict:
    pose = np.concatenate([r.pose for r in results])
    betas = np.concatenate([r.betas for r in results])
    loss = np.concatenate([r.loss for r in results])
    failed = np.concatenate([r.failed for r in results])
    gt = lsp14(test.body, test.problems.gt_pose, test.problems.gt_betas)
    fitted = lsp14(test.body, pose, betas)
    return dict(fits_per_s=len(loss) / seconds, seconds=seconds, cpu_seconds=cpu_seconds,
                fits_per_cpu_s=len(loss) / cpu_seconds, loss=float(loss[~failed].mean()),
                mpjpe=float(mpjpe(fitted, gt).mean()), pa_mpjpe=float(pa_mpjpe(fitted, gt).mean()),
                failed=int(failed.sum()))


def run_interleaved(test: TestSet, batch_size: int, console: Console) -> dict[str, dict]:
    """Default and reference mode on the same batches, alternating; returns {variant: summary}.

    Variants: the default mode as it runs (one intra-op thread per SAMPLES_PER_THREAD samples), the
    same schedule forced onto all of torch's threads (what that policy buys), SPIN's reference mode.
    """
    configs = {"default": SmplifyConfig(),
               "default_all_threads": SmplifyConfig(threads=torch.get_num_threads()),
               "reference": SmplifyConfig(mode="reference")}
    fitters = {name: SMPLify(test.body, test.prior, config) for name, config in configs.items()}
    p = test.problems
    warm = p.slice(slice(0, 2))
    for config in configs.values():  # first-call costs (allocator, lazy init) out of the timing
        short = replace(config, iters_camera=1, iters_body=1, polish_iters=1)
        SMPLify(test.body, test.prior, short).fit(warm.keypoints, warm.init_pose, warm.init_betas,
                                                  warm.init_cam_t)
    results: dict[str, list] = {mode: [] for mode in fitters}
    seconds = dict.fromkeys(fitters, 0.0)
    cpu_seconds = dict.fromkeys(fitters, 0.0)
    for lo in range(0, len(p), batch_size):
        part = p.slice(slice(lo, lo + batch_size))
        for mode, fitter in fitters.items():
            console.print(f"set {test.name}: people {lo}–{lo + len(part)} in {mode} mode …")
            start, cpu_start = time.perf_counter(), time.process_time()
            results[mode].append(fitter.fit(part.keypoints, part.init_pose, part.init_betas, part.init_cam_t))
            seconds[mode] += time.perf_counter() - start
            cpu_seconds[mode] += time.process_time() - cpu_start
    return {mode: summary(test, results[mode], seconds[mode], cpu_seconds[mode]) for mode in fitters}


def large_batch_line(test: TestSet, batch: int) -> str:
    """Default-mode fits/s at `batch` people of set A's body: on the GPU where there is one, else
    on the CPU (the same sync-free loops; SAMPLES_PER_THREAD decides its threads)."""
    p = make_problems(test.body, batch, seed=100)
    if not torch.cuda.is_available():
        fitter = SMPLify(test.body, test.prior, SmplifyConfig())
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fitter.fit(p.keypoints, p.init_pose, p.init_betas, p.init_cam_t)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        return (f"no CUDA: --device cpu --batch {batch}: {batch / cpu_seconds:.1f} fits per CPU s on "
                f"{fitter._threads_for(batch)} threads ({batch / seconds:.1f} fits/s wall), mean loss "
                f"{result.loss[~result.failed].mean():.2f}")
    fitter = SMPLify(BodyModel.from_files(resolve_body_files()), test.prior, SmplifyConfig(), device="cuda")
    args = (p.keypoints, p.init_pose, p.init_betas, p.init_cam_t)
    fitter.fit(*args)  # warm-up: kernels, allocator
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fitter.fit(*args)
    seconds = time.perf_counter() - start
    return (f"--device cuda --batch {batch}: {batch / seconds:.0f} fits/s ({torch.cuda.get_device_name()}), "
            f"mean loss {result.loss[~result.failed].mean():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=64, help="per set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cuda-batch", type=int, default=1024, help="the large-batch line's batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=160)

    sets = test_sets(args.people, args.seed)
    rows = {test.name: run_interleaved(test, args.batch_size, console) for test in sets}

    table = Table(title=f"SMPLify · {args.people} synthetic people per set · batch {args.batch_size} · "
                        f"CPU {args.threads} threads · default preset vs SPIN reference")
    table.add_column("metric")
    columns = ("reference", "default", "default_all_threads")
    for test in sets:
        table.add_column(f"{test.name} reference", justify="right")
        table.add_column(f"{test.name} default", justify="right")
        table.add_column(f"{test.name} default\n{args.threads} threads", justify="right")
    metrics = (("fits/s (wall)", "fits_per_s", "{:.2f}"), ("seconds (wall)", "seconds", "{:.1f}"),
               ("fits per CPU s", "fits_per_cpu_s", "{:.2f}"), ("CPU seconds", "cpu_seconds", "{:.1f}"),
               ("mean loss", "loss", "{:.3f}"), ("MPJPE mm", "mpjpe", "{:.2f}"),
               ("PA-MPJPE mm", "pa_mpjpe", "{:.2f}"), ("failed", "failed", "{}"))
    for label, key, fmt in metrics:
        cells = []
        for test in sets:
            cells += [fmt.format(rows[test.name][mode][key]) for mode in columns]
        table.add_row(label, *cells)
    console.print(table)
    met = True
    for test in sets:
        ref, new = rows[test.name]["reference"], rows[test.name]["default"]
        ratio = new["fits_per_s"] / ref["fits_per_s"]
        cpu_ratio = new["fits_per_cpu_s"] / ref["fits_per_cpu_s"]
        forced = rows[test.name]["default_all_threads"]["fits_per_cpu_s"] / ref["fits_per_cpu_s"]
        ok = cpu_ratio >= 100 and all(new[k] <= ref[k] for k in ("loss", "mpjpe", "pa_mpjpe"))
        met &= ok
        console.print(f"set {test.name}: default / reference fits per CPU second [bold]{cpu_ratio:.1f}×[/] "
                      f"(target ≥ 100×; {forced:.1f}× forced onto {args.threads} threads), "
                      f"wall clock {ratio:.1f}×; "
                      f"loss {new['loss']:.3f} vs {ref['loss']:.3f}; "
                      f"MPJPE {new['mpjpe']:.2f} vs {ref['mpjpe']:.2f}; "
                      f"PA-MPJPE {new['pa_mpjpe']:.2f} vs {ref['pa_mpjpe']:.2f} mm")
    console.print("[green]target met on both sets[/]" if met else "[red]target NOT met[/]")
    console.print(large_batch_line(sets[0], args.cuda_batch))


if __name__ == "__main__":
    main()
