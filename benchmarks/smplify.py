"""SMPLify default mode vs reference (SPIN's) mode on the same synthetic people, in one run.

Both modes fit the same N synthetic people (known pose, betas, camera; 49 projected joints + 1 px
noise, 10% missing) from the same perturbed initialisations, batch 64, on the CPU with 2 torch
threads. Printed side by side: fits/s and their ratio, mean final loss (the stored `fit_quality`),
and the mean 3D joint error vs ground truth (MPJPE, mm, 14 LSP joints after aligning pelvises; and
PA-MPJPE). Target: default ≥ 20× the reference's fits/s with loss and 3D error no worse.

    .venv/bin/python benchmarks/smplify.py              # 256 people (reference mode takes minutes)
    .venv/bin/python benchmarks/smplify.py --people 64  # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from fitting_workers.smplify import SMPLify, SmplifyConfig
from fitting_workers.smplify.losses import fit_quality
from fitting_workers.smplify.synthetic import SyntheticProblems, make_problems
from spin.body import BodyModel
from spin.body.files import resolve_body_files
from spin.evaluation.metrics import mpjpe, pa_mpjpe
from spin.joints import LSP14_FROM_GT, NUM_OPENPOSE


def lsp14(body: BodyModel, pose: np.ndarray, betas: np.ndarray) -> torch.Tensor:
    """14 LSP joints `(N, 14, 3)` of the given parameters."""
    with torch.no_grad():
        joints = body.joints(torch.as_tensor(pose), torch.as_tensor(betas))
    return joints[:, NUM_OPENPOSE + torch.as_tensor(LSP14_FROM_GT)]


def run_mode(body: BodyModel, prior, problems: SyntheticProblems, mode: str, batch_size: int,
             overrides: dict) -> dict:
    smplify = SMPLify(body, prior, SmplifyConfig(mode=mode, **overrides))
    warm = problems.slice(slice(0, 2))
    SMPLify(body, prior, SmplifyConfig(mode=mode, iters_camera=1, iters_body=1)).fit(
        warm.keypoints, warm.init_pose, warm.init_betas, warm.init_cam_t)
    results = []
    start = time.perf_counter()
    for lo in range(0, len(problems), batch_size):
        part = problems.slice(slice(lo, lo + batch_size))
        results.append(smplify.fit(part.keypoints, part.init_pose, part.init_betas, part.init_cam_t))
    seconds = time.perf_counter() - start
    pose = np.concatenate([r.pose for r in results])
    betas = np.concatenate([r.betas for r in results])
    loss = np.concatenate([r.loss for r in results])
    failed = np.concatenate([r.failed for r in results])
    gt = lsp14(body, problems.gt_pose, problems.gt_betas)
    fitted = lsp14(body, pose, betas)
    return dict(mode=mode, seconds=seconds, fits_per_s=len(problems) / seconds, loss=loss[~failed].mean(),
                median_loss=np.median(loss[~failed]), mpjpe=mpjpe(fitted, gt).mean(),
                pa_mpjpe=pa_mpjpe(fitted, gt).mean(), failed=int(failed.sum()),
                settings=smplify.settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="only the default mode (for tuning)")
    parser.add_argument("--iters-body", type=int, default=None, help="override the default mode's")
    parser.add_argument("--iters-camera", type=int, default=None, help="override the default mode's")
    parser.add_argument("--optimizer", default=None, help="override the default mode's")
    parser.add_argument("--lr", type=float, default=None, help="override the default mode's")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=160)

    files = resolve_body_files()
    body = BodyModel.from_files(files)
    problems = make_problems(body, args.people, seed=args.seed)
    overrides = {k: v for k, v in dict(iters_body=args.iters_body, iters_camera=args.iters_camera,
                                       optimizer=args.optimizer, lr=args.lr).items() if v is not None}

    with torch.no_grad():
        init_joints = body.joints(torch.as_tensor(problems.init_pose), torch.as_tensor(problems.init_betas))
        init_loss = fit_quality(init_joints, torch.as_tensor(problems.init_cam_t),
                                torch.as_tensor(problems.keypoints)).numpy()
    gt = lsp14(body, problems.gt_pose, problems.gt_betas)
    init = lsp14(body, problems.init_pose, problems.init_betas)
    rows = [dict(mode="initialisation", seconds=np.nan, fits_per_s=np.nan, loss=init_loss.mean(),
                 median_loss=np.median(init_loss), mpjpe=mpjpe(init, gt).mean(),
                 pa_mpjpe=pa_mpjpe(init, gt).mean(), failed=0, settings=None)]
    modes = ["default"] if args.skip_reference else ["default", "reference"]
    for mode in modes:
        console.print(f"fitting {args.people} people in {mode} mode …")
        rows.append(run_mode(body, files.prior, problems, mode, args.batch_size,
                             overrides if mode == "default" else {}))

    table = Table(title=f"SMPLify · {args.people} synthetic people · batch {args.batch_size} · "
                        f"CPU {args.threads} threads")
    for column in ("mode", "schedule", "seconds", "fits/s", "mean loss", "median loss", "MPJPE mm",
                   "PA-MPJPE mm", "failed"):
        table.add_column(column, justify="right")
    for row in rows:
        s = row["settings"]
        schedule = "—" if s is None else f"{s.optimizer} lr {s.lr:g}, {s.iters_camera}+{s.iters_body} it"
        if s is not None and s.polish_iters:
            schedule += f" + {s.polish_iters} L-BFGS"
        table.add_row(row["mode"], schedule, f"{row['seconds']:.1f}", f"{row['fits_per_s']:.1f}",
                      f"{row['loss']:.2f}", f"{row['median_loss']:.2f}", f"{row['mpjpe']:.1f}",
                      f"{row['pa_mpjpe']:.1f}", str(row["failed"]))
    console.print(table)
    if not args.skip_reference:
        default, reference = rows[1], rows[2]
        ratio = default["fits_per_s"] / reference["fits_per_s"]
        console.print(f"speed-up default / reference: [bold]{ratio:.1f}×[/] (target ≥ 20×); "
                      f"loss {default['loss']:.2f} vs {reference['loss']:.2f}; "
                      f"MPJPE {default['mpjpe']:.1f} vs {reference['mpjpe']:.1f} mm")
        ok = ratio >= 20 and default["loss"] <= reference["loss"] and default["mpjpe"] <= reference["mpjpe"]
        console.print("[green]target met[/]" if ok else "[red]target NOT met[/]")


if __name__ == "__main__":
    main()
