"""`spin fit`: batched SMPLify over a SPIN-format dataset file, in this process (no Ray)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from spin.cli.options import BodyModelOption, JointRegressorExtraOption, PriorOption
from spin.errors import UserError

_console = Console()


def _summary_table(counts, seconds: float, mode: str, stored: bool) -> Table:
    """One row: samples, mean loss of the usable fits, frac valid, failed by reason, fits/s (+ stored)."""
    from fitting_workers.counts import failed_text

    table = Table(title=f"spin fit · {mode} mode")
    for column in ("samples", "mean loss", "frac valid", "failed", "fits/s"):
        table.add_column(column, justify="right")
    mean_loss = counts.mean_loss
    row = [
        str(counts.fitted),
        "n/a" if math.isnan(mean_loss) else f"{mean_loss:.2f}",
        f"{counts.frac_valid:.3f}" if counts.fitted else "n/a",
        failed_text(counts),
        f"{counts.fitted / seconds:.1f}" if seconds > 0 else "n/a",
    ]
    if stored:
        table.add_column("stored (improved)", justify="right")
        row.append(f"{counts.accepted} ({counts.improved})")
    table.add_row(*row)
    return table


def _write_fits(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """FITS.npz through a temporary file, so a crash never leaves half a file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def fit_command(
    data: Annotated[Path, typer.Option("--data", help="SPIN-format dataset .npz (keypoints to fit).")],
    out: Annotated[Path, typer.Option("--out", help="FITS.npz to write: pose, betas, cam_t, loss, valid, "
                                                    "failed.")],
    init: Annotated[
        Optional[Path],
        typer.Option("--init", help="INIT.npz with pose (N,72), betas (N,10), optional cam_t (N,3) "
                                    "(default: the mean pose, camera from the keypoints)."),
    ] = None,
    body_model: BodyModelOption = None,
    joint_regressor_extra: JointRegressorExtraOption = None,
    prior: PriorOption = None,
    iters: Annotated[
        Optional[int],
        typer.Option("--iters", min=0, help="Iterations per stage (default: the mode's; the default "
                                            "mode's L-BFGS polish is kept)."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples fitted together.")] = 64,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (cuda:N).")] = "cpu",
    mode: Annotated[
        str, typer.Option("--mode", help="default (fast joints path) or reference (SPIN's full mesh).")
    ] = "default",
    store: Annotated[
        Optional[Path], typer.Option("--store", help="Also offer the fits to this LMDB fits store.")
    ] = None,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Dataset name for store keys <dataset>/<index>.")
    ] = None,
) -> None:
    """Fit SMPL to every sample's 2D keypoints with batched SMPLify; write FITS.npz (and the store)."""
    import torch

    from fitting_workers.counts import FitCounts
    from fitting_workers.dataset_fit import (
        check_dataset_name,
        dataset_keys,
        load_initialisation,
        mean_initialisation,
    )
    from fitting_workers.fit_path import fit_and_offer, smplify_fitter
    from fitting_workers.jobs import FitJobBatch
    from fitting_workers.smplify import SMPLify, SmplifyConfig
    from spin.body import BodyModel
    from spin.body.files import resolve_body_files
    from spin.data.spin_format import load_spin_npz
    from spin.progress import progress_bar

    if mode not in ("default", "reference"):
        raise UserError(f"--mode {mode!r} is not a SMPLify mode; use --mode default or --mode reference.")
    if (store is None) != (dataset is None):
        raise UserError("--store and --dataset go together; pass both to write fits to a store, or neither.")
    if dataset is not None:
        check_dataset_name(dataset)
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a torch device; use cpu or cuda.") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for CUDA but torch sees no GPU here; use --device cpu.")

    annotations = load_spin_npz(data)
    n = len(annotations)
    if n == 0:
        raise UserError(f"{data} holds no samples; nothing to fit.")
    body_files = resolve_body_files(body_model=body_model, joint_regressor_extra=joint_regressor_extra,
                                    prior=prior)
    if body_files.prior is None:
        raise UserError("No GMM pose prior for this body model; pass SMPLify's gmm_08.pkl with --prior.")
    initial = load_initialisation(init, n) if init is not None else mean_initialisation(body_files, n)
    config = SmplifyConfig(mode=mode)
    if iters is not None:
        config.iters_camera = config.iters_body = iters
    fitter = smplify_fitter(SMPLify(BodyModel.from_files(body_files), body_files.prior, config,
                                    device=torch_device))

    writer = None
    if store is not None:
        from store import FitsStore

        writer = FitsStore(store)
    # Without a store the keys only label the jobs; FitJobBatch needs one per sample.
    keys = dataset_keys(dataset if dataset is not None else "fit", n)
    pose = np.empty((n, 72), np.float32)
    betas = np.empty((n, 10), np.float32)
    cam_t = np.empty((n, 3), np.float32)
    loss = np.empty(n, np.float32)
    failed = np.empty(n, bool)
    counts = FitCounts()
    start = time.perf_counter()
    try:
        with progress_bar("fitting", total=n, console=_console) as bar:
            for lo in range(0, n, batch_size):
                part = slice(lo, min(lo + batch_size, n))
                jobs = FitJobBatch(keys=keys[part], keypoints=annotations.keypoints[part],
                                   pose=initial.pose[part], betas=initial.betas[part],
                                   cam_t=None if initial.cam_t is None else initial.cam_t[part])
                result, batch_counts = fit_and_offer(fitter, writer, jobs, config.threshold)
                counts = counts + batch_counts
                pose[part], betas[part], cam_t[part] = result.pose, result.betas, result.cam_t
                loss[part], failed[part] = result.loss, result.failed
                bar.update(completed=part.stop,
                           info=f"{part.stop / (time.perf_counter() - start):.1f} fits/s")
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - start

    valid = ~failed & (loss < config.threshold)
    _write_fits(out, dict(pose=pose, betas=betas, cam_t=cam_t, loss=loss, valid=valid, failed=failed))
    _console.print(_summary_table(counts, seconds, mode, stored=writer is not None))
    offered = f" and offered {counts.usable} fits to {store}" if writer is not None else ""
    _console.print(f"wrote {out}{offered}")
