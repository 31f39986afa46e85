"""`spin train`, `spin rounds`: plain functions the lead mounts on the `spin` app.

Heavy imports (torch, ray) happen inside the functions so `spin --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from spin.progress import report_console

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"

console = report_console()


def _default_config_path() -> Path:
    """configs/default.yaml of the checkout (the package is installed editable from it)."""
    if not DEFAULT_CONFIG.is_file():
        from spin.errors import UserError

        raise UserError(f"The default config {DEFAULT_CONFIG} is missing; pass --config FILE "
                        "(e.g. a copy of configs/default.yaml from the repository).")
    return DEFAULT_CONFIG


# The regressor's shape: the checkpoint's weights only load into the same architecture.
ARCHITECTURE_KEYS = ("model.backbone", "model.hidden", "model.iterations", "model.img_res")


def check_resume_overrides(saved, wanted, run_dir: Path) -> None:
    """A UserError naming the first architecture key that `--resume` overrides would change."""
    from spin.errors import UserError

    for key in ARCHITECTURE_KEYS:
        section, name = key.split(".")
        before, after = getattr(getattr(saved, section), name), getattr(getattr(wanted, section), name)
        if before != after:
            raise UserError(f"--resume cannot change {key} ({before!r} → {after!r}): the checkpoints in "
                            f"{run_dir} hold weights of the {before!r} architecture; drop the override, or "
                            "start a new run with --run-dir.")


def train_command(
    overrides: Optional[list[str]] = typer.Argument(
        None, help="Config overrides as key=value, e.g. optim.lr=1e-4."),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="YAML config (default: configs/default.yaml)."),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Run folder (default: runs/<name>)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder exactly."),
) -> None:
    """Train the regressor with SMPLify fitting in the loop, in rounds; or --resume a run."""
    from spin.cli.train_run import run_training
    from spin.config import TrainConfig
    from spin.config_loading import load_config
    from spin.errors import UserError
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
        if overrides:
            check_resume_overrides(load_config(TrainConfig, saved, []), cfg, resume)
        folder = resume
    else:
        cfg = load_config(TrainConfig, config or _default_config_path(), overrides)
        folder = run_dir or default_run_dir(cfg)
    run_training(cfg, folder, resume=resume is not None, console=console)


def rounds_command(
    run_dir: Path = typer.Argument(..., help="Run folder written by `spin train`."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of per-round objects."),
) -> None:
    """Table and PNG plot of a run's rounds (MPJPE, PA-MPJPE, fit statistics)."""
    from spin.cli.train_run import rounds_table
    from spin.training.rounds import PLOT_FILE, load_rounds, plot_rounds

    rounds = load_rounds(run_dir)
    if as_json:
        print(json.dumps(rounds))
        return
    console.print(rounds_table(rounds))
    plot = plot_rounds(rounds, run_dir / PLOT_FILE)
    console.print(f"plot: {plot}")
