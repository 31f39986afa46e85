"""`spin fits init`: fit every sample of a SPIN-format dataset with the fitting actors into a store."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from spin.cli.options import BodyModelOption, JointRegressorExtraOption, PriorOption

_console = Console()


def _report_table(report) -> Table:
    """The closing summary, one row per quantity (fits narrow terminals); failed fits by reason."""
    from fitting_workers.counts import failed_text

    counts = report.counts
    table = Table(title=f"fits init · {report.dataset}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    mean_loss = "n/a" if math.isnan(counts.mean_loss) else f"{counts.mean_loss:.2f}"
    rows = [
        ("samples", str(report.samples)),
        ("fitted", str(counts.fitted)),
        ("accepted", str(counts.accepted)),
        ("improved", str(counts.improved)),
        ("failed", failed_text(counts)),
        ("retried", str(counts.retried)),
        ("dropped", str(counts.dropped)),
        ("errors", str(counts.errors)),
        ("actor restarts", str(report.restarts)),
        ("in store", f"{report.in_store} / {report.samples}"),
        ("fits/s", f"{report.fits_per_s:.1f}"),
        ("mean loss", mean_loss),
        ("frac valid", f"{counts.frac_valid:.3f}"),
        ("actor nodes", str(len(report.actor_nodes))),
        ("seconds", f"{report.seconds:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def fits_init_command(
    data: Annotated[Path, typer.Option("--data", help="SPIN-format dataset .npz whose samples are fitted.")],
    store: Annotated[Path, typer.Option("--store", help="LMDB fits store (created if absent).")],
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset name: keys are <dataset>/<index>.")],
    init: Annotated[
        Optional[Path],
        typer.Option("--init", help="INIT.npz with pose (N,72), betas (N,10), optional cam_t (N,3)."),
    ] = None,
    body_model: BodyModelOption = None,
    joint_regressor_extra: JointRegressorExtraOption = None,
    prior: PriorOption = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Number of fitting actors.")] = 2,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per fitting batch.")] = 32,
    iters: Annotated[
        Optional[int],
        typer.Option("--iters", min=0, help="SMPLify iterations per stage (default: the mode's)."),
    ] = None,
    cpus_per_actor: Annotated[
        float, typer.Option("--cpus-per-actor", min=0.0, help="Ray CPUs per actor.")
    ] = 1.0,
    gpus_per_actor: Annotated[
        float, typer.Option("--gpus-per-actor", min=0.0, help="Ray GPU share per actor (>0 fits on CUDA).")
    ] = 0.0,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Torch threads per actor.")] = 1,
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="Join this Ray cluster (default: local Ray).")
    ] = None,
):
    """Fit every sample of DATA with the fitting actors, from the mean pose or --init, into STORE."""
    from fitting_workers.config import FittingConfig
    from fitting_workers.dataset_fit import check_dataset_name, fit_dataset, load_initialisation
    from fitting_workers.runtime import ray_session
    from fitting_workers.smplify import SmplifyConfig
    from fitting_workers.store_actor import open_store_writer
    from spin.body.files import resolve_body_files
    from spin.data.spin_format import load_spin_npz
    from spin.progress import progress_bar

    check_dataset_name(dataset)
    annotations = load_spin_npz(data)
    initial = load_initialisation(init, len(annotations)) if init is not None else None
    body_files = resolve_body_files(
        body_model=body_model, joint_regressor_extra=joint_regressor_extra, prior=prior
    )
    smplify = SmplifyConfig() if iters is None else SmplifyConfig(iters_camera=iters, iters_body=iters)
    config = FittingConfig(
        num_actors=workers,
        cpus_per_actor=cpus_per_actor,
        gpus_per_actor=gpus_per_actor,
        torch_threads=threads,
        batch_size=batch_size,
        ray_address=ray_address,
        smplify=smplify,
    )
    # Locally, Ray's logical CPUs must cover the actors asked for even on a small machine.
    local_cpus = max(os.cpu_count() or 1, math.ceil(workers * cpus_per_actor))
    with ray_session(address=ray_address, num_cpus=None if ray_address else local_cpus):
        writer = open_store_writer(str(store))
        with progress_bar(f"fitting {dataset}", total=len(annotations), console=_console) as bar:

            def advance(done: int, total: int) -> None:
                bar.update(completed=done, total=total)

            report = fit_dataset(annotations, dataset, writer, config, body_files, init=initial,
                                 on_progress=advance)
    _console.print(_report_table(report))
    if report.last_error and (report.counts.errors or report.counts.dropped):
        _console.print(f"[yellow]last error:[/] {report.last_error}", highlight=False)
    return report
