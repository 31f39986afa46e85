"""`spin train` behind the CLI: a Trainer with a progress bar, then the rounds table."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from spin.config import TrainConfig
from spin.training.rounds import PLOT_FILE, load_rounds, plot_rounds
from spin.training.trainer import Trainer


def run_training(config: TrainConfig, run_dir: str | Path, resume: bool = False,
                 console: Console | None = None) -> list[dict]:
    """Train (or resume) the run in `run_dir`; print the rounds table and where things are."""
    from spin.cli.train import rounds_table

    console = console or Console()
    run_dir = Path(run_dir)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("setting up", total=None, info="")

        def on_step(trainer: Trainer) -> None:
            progress.update(task, completed=trainer.step, description=f"round {trainer.current_round_done}",
                            info=trainer.progress_info())

        with Trainer(config, run_dir, resume=resume, on_step=on_step) as trainer:
            progress.update(task, total=trainer.total_steps, completed=trainer.step, description="training")
            trainer.train()
    rounds = load_rounds(run_dir)
    console.print(rounds_table(rounds))
    plot = plot_rounds(rounds, run_dir / PLOT_FILE)
    console.print(f"run folder: {run_dir}\nplot: {plot}\nstore: {trainer.store_path}\n"
                  f"per-round checkpoints, store snapshots, overlays: {run_dir}/round_XXX/")
    if config.wandb.enabled:
        console.print(f"wandb run: {run_dir}/wandb (sync an offline run with `wandb sync`)")
    return rounds
