"""`spin train`, `spin eval`, `spin rounds`: plain functions the lead mounts on the `spin` app.

Heavy imports (torch, ray) happen inside the functions so `spin --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"

console = Console()


def _default_config_path() -> Path:
    """configs/default.yaml of the checkout (the package is installed editable from it)."""
    if not DEFAULT_CONFIG.is_file():
        from spin.errors import UserError

        raise UserError(f"The default config {DEFAULT_CONFIG} is missing; pass --config FILE "
                        "(e.g. a copy of configs/default.yaml from the repository).")
    return DEFAULT_CONFIG


def train_command(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Config overrides as key=value, e.g. optim.lr=1e-4."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML config (default: configs/default.yaml)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default: runs/<name>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder exactly."),
) -> None:
    """Train the regressor with SMPLify fitting in the loop, in rounds; or --resume a run."""
    from spin.config import TrainConfig
    from spin.config_loading import load_config
    from spin.errors import UserError
    from spin.training.run import run_training
    from spin.training.trainer import CONFIG_FILE, default_run_dir

    overrides = list(overrides or [])
    if resume is not None:
        if config is not None or run_dir is not None:
            raise UserError("--resume continues a run with its own config and folder; "
                            "drop --config/--run-dir.")
        saved = resume / CONFIG_FILE
        if not saved.is_file():
            raise UserError(f"Run folder {resume} has no {CONFIG_FILE}; pass the folder `spin train` wrote.")
        cfg = load_config(TrainConfig, saved, overrides)
        folder = resume
    else:
        cfg = load_config(TrainConfig, config or _default_config_path(), overrides)
        folder = run_dir or default_run_dir(cfg)
    run_training(cfg, folder, resume=resume is not None, console=console)


def eval_command(
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="A checkpoint .pt (runs/<name>/last.pt, round_XXX/...)."),
    data: Path = typer.Option(..., "--data", help="SPIN-format test .npz."),
    images: Optional[Path] = typer.Option(
        None, "--images", help="Image folder or .h5 pack (default: the npz's folder)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Write per-sample predictions and errors to this .npz."),
    batch_size: int = typer.Option(64, "--batch-size"),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """MPJPE and PA-MPJPE (mm) on the 14 LSP joints, and per-vertex error where GT SMPL exists."""
    from spin.evaluation.checkpoint_eval import evaluate_checkpoint

    result = evaluate_checkpoint(checkpoint, data, images=images, batch_size=batch_size, device=device,
                                 out=out)
    metrics = result.metrics()
    if as_json:
        print(json.dumps(metrics))
        return
    table = Table(title=f"{data.name} — {checkpoint}")
    for column in ("samples", "MPJPE (mm)", "PA-MPJPE (mm)", "vertex error (mm)"):
        table.add_column(column, justify="right")
    table.add_row(str(metrics["count"]), f"{metrics['mpjpe']:.1f}", f"{metrics['pa_mpjpe']:.1f}",
                  "—" if metrics["pve"] is None else f"{metrics['pve']:.1f}")
    console.print(table)
    if out is not None:
        console.print(f"predictions: {out}")


def rounds_command(
    run_dir: Path = typer.Argument(..., help="Run folder written by `spin train`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of per-round objects."),
) -> None:
    """Table and PNG plot of a run's rounds (MPJPE, PA-MPJPE, fit statistics)."""
    from spin.training.rounds import PLOT_FILE, load_rounds, plot_rounds

    rounds = load_rounds(run_dir)
    if as_json:
        print(json.dumps(rounds))
        return
    console.print(rounds_table(rounds))
    plot = plot_rounds(rounds, run_dir / PLOT_FILE)
    console.print(f"plot: {plot}")


def _fmt(value: object, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def rounds_table(rounds: list[dict]) -> Table:
    """Rich table of round metrics (what `spin rounds` and the end of `spin train` print).

    valid fits: stored train fits under the threshold; train valid: train samples with one (a
    sample without a fit counts as not valid); improved: stored fits replaced by a better one.
    """
    table = Table(title="rounds (test split: MPJPE / PA-MPJPE in mm)")
    columns = ("round", "step", "MPJPE", "PA-\nMPJPE", "valid\nfits", "train\nvalid", "fit\nloss",
               "fits\nimproved", "steps\n/s")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rounds:
        table.add_row(str(r["round"]), str(r.get("step", "")), _fmt(r.get("mpjpe"), ".1f"),
                      _fmt(r.get("pa_mpjpe"), ".1f"), _fmt(r.get("frac_valid"), ".1%"),
                      _fmt(r.get("frac_valid_of_train"), ".1%"), _fmt(r.get("mean_fit_loss"), ".1f"),
                      _fmt(r.get("fits_improved_in_round"), "d"), _fmt(r.get("steps_per_s"), ".2f"))
    return table
