"""The `spin` console command: one entry point, one sub-command per job.

Every sub-command lives in its own module; this file only mounts them and turns user errors
(`UserError`, `StoreError`) into one red sentence and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from spin.cli.body import body_app
from spin.cli.data import data_app
from spin.cli.eval import eval_command
from spin.cli.experiment import experiment_command
from spin.cli.fit import fit_command
from spin.cli.fits import fits_app
from spin.cli.fits_init import fits_init_command
from spin.cli.train import rounds_command, train_command
from spin.errors import UserError
from store.errors import StoreError

app = typer.Typer(
    name="spin",
    help="Train SPIN-style 3D human pose-and-shape regressors with SMPLify fitting workers in the loop.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(body_app, name="body", help="Synthesise, inspect and convert SMPL body-model files.")
app.add_typer(data_app, name="data", help="Make synthetic SPIN-format datasets and pack images into HDF5.")
fits_app.command("init", help="Fit every sample of a dataset with the fitting workers into a store.")(
    fits_init_command
)
app.add_typer(fits_app, name="fits", help="Inspect, import, export and verify the LMDB fits dictionary.")
app.command("fit", help="Run batched SMPLify over a SPIN-format dataset file.")(fit_command)
app.command("train", help="Train the regressor with fitting in the loop, in rounds (or --resume a run).")(
    train_command
)
app.command("eval", help="Evaluate a checkpoint with SPIN's protocols (h36m-p1/p2, 3dpw, mpi-inf-3dhp).")(
    eval_command
)
app.command("experiment", help="Run a named set of training runs (rows x seeds), resumable; tables, plots.")(
    experiment_command
)
app.command("rounds", help="Table and plot of a run's rounds (MPJPE, PA-MPJPE, fit statistics).")(
    rounds_command
)

_err = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except (UserError, StoreError) as err:
        _err.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        _err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
