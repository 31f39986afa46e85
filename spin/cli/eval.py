"""`spin eval`: a checkpoint (this project's or SPIN's released one) under one of SPIN's protocols."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
_LABELS = {"mpjpe": "MPJPE (mm)", "pa_mpjpe": "PA-MPJPE (mm)", "pve": "vertex error (mm)",
           "pck": "PCK@150mm", "auc": "AUC", "pa_pck": "PA-PCK@150mm", "pa_auc": "PA-AUC",
           "joint_rotation_error": "joint rotation error (rad)", "pckh": "PCKh@0.5"}


def _json_safe(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}


def eval_command(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint",
        help="A run's checkpoint (last.pt, round_XXX/...) or SPIN's model_checkpoint.pt"),
    data: Path = typer.Option(..., "--data", help="SPIN-format test .npz."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Image folder or .h5 pack (default: the npz's folder)."),
    protocol: Optional[str] = typer.Option(
        None, "--protocol", help="h36m-p1, h36m-p2, 3dpw, mpi-inf-3dhp or synthetic (default: SPIN's "
        "protocol for SPIN's test file names, else synthetic)."),
    body_model: Optional[Path] = typer.Option(
        None, "--body-model", help="SMPL file or folder (default: the checkpoint's, or the synthetic one)."),
    joint_regressor_extra: Optional[Path] = typer.Option(None, "--joint-regressor-extra"),
    joint_regressor_h36m: Optional[Path] = typer.Option(
        None, "--joint-regressor-h36m", help="SPIN's J_regressor_h36m.npy (default: beside the model)."),
    img_res: Optional[int] = typer.Option(
        None, "--img-res", help="Network input size (default: the checkpoint's config, 224 for SPIN's)."),
    representation: Optional[str] = typer.Option(
        None, "--representation", help="Input representation (rgb, textured, silhouette, "
        "parts3/6/12/24, heatmaps14/24); always the checkpoint's own (its saved config), so only a check."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write predictions (pose, betas, cam) and per-sample errors to this .npz."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """SPIN's evaluation numbers (MPJPE, PA-MPJPE; PCK/AUC for MPI-INF-3DHP) and NBF's (joint rotation
    error, PCKh@0.5) of a checkpoint, on the input representation it was trained on."""
    from spin.evaluation.checkpoint_eval import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, images=images, batch_size=batch_size, device=device,
                                 out=out, protocol=protocol, body_model=body_model,
                                 joint_regressor_extra=joint_regressor_extra,
                                 joint_regressor_h36m=joint_regressor_h36m, img_res=img_res,
                                 representation=representation)
    metrics = _json_safe(result.metrics())
    if as_json:
        if out is not None:
            metrics["out"] = str(out)
        print(json.dumps(metrics, allow_nan=False))
        return
    # The heading on a line of its own: as a table title it would wrap inside the table's width,
    # breaking long checkpoint paths.
    console.print(f"{data.name} — {checkpoint} — protocol {result.protocol}, input {result.representation}",
                  soft_wrap=True, highlight=False)
    table = Table()
    names = [k for k in _LABELS if k in result.means]
    table.add_column("samples", justify="right")
    for name in names:
        table.add_column(_LABELS[name], justify="right")
    cells = []
    for name in names:
        value = metrics.get(name)
        cells.append("—" if value is None else (f"{value:.1f}" if "mpjpe" in name or name == "pve"
                                                  else f"{value:.3f}"))
    table.add_row(str(metrics["count"]), *cells)
    console.print(table)
    if out is not None:
        console.print(f"predictions: {out}")
