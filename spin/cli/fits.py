"""`spin fits …`: inspect, import, export, compare, verify and snapshot the LMDB fits dictionary.

`spin fits init` (fit a whole dataset with the fitting workers) lives in `spin.cli.fits_init`
and is mounted onto `fits_app` by `spin.cli.main`.
"""

from __future__ import annotations

import datetime
import json
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from spin.cli.options import BodyModelOption, JointRegressorExtraOption
from spin.errors import UserError

fits_app = typer.Typer(
    no_args_is_help=True, help="Inspect, import, export and verify the LMDB fits dictionary."
)
_console = Console(soft_wrap=True)  # one line per message, however narrow the terminal

StoreOption = Annotated[Path, typer.Option("--store", help="The fits store directory (LMDB environment).")]
ThresholdOption = Annotated[
    float, typer.Option("--threshold", help="A fit supervises when its loss is below this (SPIN: 100).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


class ExportFormat(str, Enum):
    spin_npy = "spin-npy"
    npz = "npz"
    h5 = "h5"


_EXPORT_SUFFIXES = {
    ExportFormat.spin_npy: (".npy",),
    ExportFormat.npz: (".npz",),
    ExportFormat.h5: (".h5", ".hdf5"),
}


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e5 else f"{value:.{digits}f}"
    return str(value)


@contextmanager
def _progress(label: str):
    """The project's progress bar; yields the `on_progress(done, total)` callback the store calls."""
    from spin.progress import progress_bar

    with progress_bar(label, console=_console, transient=True) as bar:
        yield lambda done, total: bar.update(completed=done, total=total)


def _open(store: Path):
    from store import FitsStore

    return FitsStore(store, readonly=True)


@fits_app.command("stats")
def stats_command(
    store: StoreOption, threshold: ThresholdOption = 100.0, as_json: JsonOption = False
) -> None:
    """Per dataset: count, mean/median loss, fraction under the threshold, unscored, by source and round."""
    from store.schema import UNSCORED_LOSS
    from store.stats import dataset_stats

    with _open(store) as fits:
        stats = dataset_stats(fits, threshold=threshold)
        counters = fits.counters()
    if as_json:
        typer.echo(json.dumps(stats))
        return
    table = Table(title=f"fits in {store} (threshold {threshold:g})")
    for column in ("dataset", "fits", "size", "mean loss", "median loss", "under threshold", "unscored"):
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, entry in stats.items():
        table.add_row(
            name,
            str(entry["count"]),
            str(entry["size"]),
            _number(entry["mean_loss"]),
            _number(entry["median_loss"]),
            f"{entry['frac_valid']:.1%}",
            str(entry["unscored"]),
        )
    _console.print(table)
    for group, label in (("by_source", "source"), ("by_round", "round written")):
        detail = Table(title=f"by {label}")
        for column in ("dataset", label, "fits", "mean loss", "under threshold"):
            detail.add_column(column, justify="left" if column in ("dataset", label) else "right")
        for name, entry in stats.items():
            for key, part in entry[group].items():
                detail.add_row(
                    name, key, str(part["count"]), _number(part["mean_loss"]), f"{part['frac_valid']:.1%}"
                )
        _console.print(detail)
    if not stats:
        _console.print("[yellow]the store holds no datasets yet[/]")
    _console.print(
        f"writes: {counters['offered']} fits offered in {counters['batches']} batches, "
        f"{counters['accepted']} accepted, {counters['refused_nonfinite']} refused for NaN/Inf, "
        f"{counters['refused_invalid_loss']} refused for a negative loss"
    )
    unscored = sum(entry["unscored"] for entry in stats.values())
    if unscored:
        _console.print(
            f"[yellow]{unscored} fits are unscored[/] (imported without a loss, stored as the placeholder "
            f"{UNSCORED_LOSS:g}; they never supervise until a scored fit replaces them)"
        )


@fits_app.command("show")
def show_command(
    key: Annotated[str, typer.Argument(help="The sample key, `<dataset>/<index>`.")],
    store: StoreOption,
    as_json: JsonOption = False,
    png: Annotated[
        Optional[Path], typer.Option("--png", help="Also draw the fitted mesh over the crop into this PNG.")
    ] = None,
    data: Annotated[
        Optional[Path], typer.Option("--data", help="(--png) the sample's dataset .npz (image, keypoints).")
    ] = None,
    images: Annotated[
        Optional[Path], typer.Option("--images", help="(--png) image folder or pack (default: by --data).")
    ] = None,
    body_model: BodyModelOption = None,
    joint_regressor_extra: JointRegressorExtraOption = None,
) -> None:
    """Print one stored fit: loss, source, round, step, time, camera, betas and the 24 joint rotations."""
    with _open(store) as fits:
        record = fits.get([key])
    if not record["present"][0]:
        raise UserError(f"fits store {store} has no fit for {key!r}; check the key (`<dataset>/<index>`)")
    fields = {name: values[0] for name, values in record.items() if name != "present"}
    if png is not None:
        from spin.atomic_io import check_new_output
        from spin.cli.fits_picture import fit_picture
        from spin.training.overlays import save_png

        save_png(fit_picture(fields, key, data, images, body_model, joint_regressor_extra),
                 check_new_output(png, force=True, what="Picture"))
        _console.print(f"picture of {key} written to {png}")
    if as_json:
        typer.echo(json.dumps({name: np.asarray(value).tolist() for name, value in fields.items()}))
        return
    written = datetime.datetime.fromtimestamp(float(fields["time"]), tz=datetime.timezone.utc)
    table = Table(title=f"{key} in {store}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    table.add_row("loss", _number(float(fields["loss"]), 4))
    table.add_row("source", str(fields["source"]))
    table.add_row("round", str(fields["round"]))
    table.add_row("step", str(fields["step"]))
    table.add_row("written", written.isoformat(timespec="seconds"))
    table.add_row("cam_t", " ".join(f"{v:.4f}" for v in fields["cam_t"]))
    table.add_row("betas", " ".join(f"{v:.3f}" for v in fields["betas"]))
    _console.print(table)
    pose = Table(title="pose (axis-angle per SMPL joint)")
    for column in ("joint", "x", "y", "z"):
        pose.add_column(column, justify="right")
    for joint, (x, y, z) in enumerate(fields["pose"].reshape(24, 3)):
        pose.add_row(str(joint), f"{x:.4f}", f"{y:.4f}", f"{z:.4f}")
    _console.print(pose)


@fits_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="SPIN static fits .npy, final fits .npz, or an export .h5.")],
    store: StoreOption,
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Dataset name (all datasets of an .h5 when omitted).")
    ] = None,
    loss: Annotated[
        Optional[Path], typer.Option("--loss", help="(.npy only) a (N,) float file with each row's loss.")
    ] = None,
    round: Annotated[
        int, typer.Option("--round", min=0, help="Round number to record the imported fits under.")
    ] = 0,
    data: Annotated[
        Optional[Path],
        typer.Option("--data", help="The fits' SPIN-format dataset .npz: score each fit on its keypoints."),
    ] = None,
    body_model: BodyModelOption = None,
    joint_regressor_extra: JointRegressorExtraOption = None,
) -> None:
    """Import fits; a record is written only where the store has none or a worse one.

    The file is checked whole (shapes, NaN/Inf, losses finite and >= 0, dataset size) before
    anything is written; the store is created only then. With `--data` every fit is scored as SPIN
    scores its static fits (camera estimated from the fit's joints and the keypoints, the stored
    reprojection loss), so it supervises from the first step; fits that cannot be scored (too few
    confident keypoints, …) are not written and are counted by reason.
    """
    from store import FitsStore, schema

    suffix = file.suffix.lower()
    if suffix not in (".npy", ".npz", ".h5", ".hdf5"):
        raise UserError(
            f"{file} is not .npy (static fits), .npz (final fits) or .h5 (export); rename or convert it"
        )
    if suffix != ".npy" and loss is not None:
        raise UserError(f"--loss applies to .npy static fits only; {file} carries its own losses")
    if suffix in (".npy", ".npz") and not dataset:
        raise UserError(f"importing {file} needs --dataset NAME, the dataset its rows belong to")
    if data is not None and (suffix not in (".npy", ".npz") or loss is not None):
        raise UserError("--data scores .npy static fits or .npz final fits; it cannot be combined with "
                        f"--loss or used for {file.suffix} files")
    write = _prepare_import(file, suffix, dataset, loss, round)  # checks the file; no store yet
    if data is not None:
        from spin.cli.fits_scoring import scored_import

        write = scored_import(file, suffix, dataset, round, data, body_model, joint_regressor_extra,
                              _console)
    with FitsStore(store) as fits, _progress(f"importing {file.name}") as on_progress:
        summaries = write(fits, on_progress)
    for summary in summaries:
        line = f"{summary.dataset}: {summary.rows} rows read, {summary.accepted} written"
        if summary.skipped:
            line += f", {summary.skipped} rows without a fit skipped"
        if summary.exact_rows:
            line += f", {summary.exact_rows} float64 rows kept exactly"
        _console.print(line)
    if suffix == ".npy" and loss is None and data is None:
        _console.print(
            f"[yellow]no --loss given:[/] the rows are stored unscored (loss {schema.UNSCORED_LOSS:g}); any "
            "scored fit replaces them, and rewriting a row with its real loss rescores it"
        )


def _prepare_import(file: Path, suffix: str, dataset: str | None, loss: Path | None, round: int):
    """Check the whole file (shapes, NaN/Inf, losses) and return `write(store, on_progress)`."""
    from store.interchange.h5 import check_h5, import_h5
    from store.interchange.npy import read_spin_npy, write_static
    from store.interchange.npz import read_npz, write_final

    if suffix == ".npy":
        static = read_spin_npy(file, loss=loss)
        return lambda fits, on_progress: [write_static(fits, dataset, static, round, on_progress)]
    if suffix == ".npz":
        final = read_npz(file)
        return lambda fits, on_progress: [write_final(fits, dataset, final, round, on_progress)]
    wanted = [dataset] if dataset else None
    check_h5(file, wanted)
    return lambda fits, on_progress: import_h5(fits, file, datasets=wanted, on_progress=on_progress)


@fits_app.command("export")
def export_command(
    store: StoreOption,
    export_format: Annotated[ExportFormat, typer.Option("--format", help="spin-npy, npz or h5.")],
    out: Annotated[Path, typer.Option("--out", help="The file to write.")],
    dataset: Annotated[
        Optional[str], typer.Option("--dataset", help="Dataset to export (h5: all when omitted).")
    ] = None,
    threshold: ThresholdOption = 100.0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> None:
    """Export fits as SPIN static fits (.npy), SPIN final fits (.npz) or HDF5 (.h5)."""
    from store.interchange import export_h5, export_npz, export_spin_npy
    from store.interchange.common import check_output

    if export_format is not ExportFormat.h5 and not dataset:
        raise UserError(f"--format {export_format.value} exports one dataset; add --dataset NAME")
    suffixes = _EXPORT_SUFFIXES[export_format]
    if out.suffix.lower() not in suffixes:
        raise UserError(
            f"--out {out} does not end in {' or '.join(suffixes)}, the extension of --format "
            f"{export_format.value}; rename --out or choose the matching --format"
        )
    check_output(out, overwrite=force)  # before reading the store: a wrong --out costs nothing
    with _open(store) as fits, _progress(f"exporting to {out.name}") as on_progress:
        if export_format is ExportFormat.spin_npy:
            summaries = [export_spin_npy(fits, dataset, out, on_progress=on_progress, overwrite=force)]
        elif export_format is ExportFormat.npz:
            summaries = [
                export_npz(fits, dataset, out, threshold=threshold, on_progress=on_progress, overwrite=force)
            ]
        else:
            wanted = [dataset] if dataset else None
            summaries = export_h5(fits, out, datasets=wanted, on_progress=on_progress, overwrite=force)
    for summary in summaries:
        line = f"{summary.dataset}: {summary.rows} rows written to {out}"
        if summary.missing:
            what = "filled with zeros" if export_format is ExportFormat.spin_npy else "marked invalid"
            if export_format is ExportFormat.h5:
                what = "not in the store (absent from the file)"
            line += f"; {summary.missing} samples have no fit ({what})"
        _console.print(line)


@fits_app.command("plot")
def plot_command(
    store: StoreOption,
    out: Annotated[Path, typer.Option("--out", help="The PNG to write.")] = Path("fits.png"),
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Only this dataset.")] = None,
    threshold: ThresholdOption = 100.0,
) -> None:
    """PNG: loss histogram with the threshold line, and acceptance of offered fits by round."""
    from spin.cli.fits_plots import plot_fits
    from store.stats import dataset_columns

    with _open(store) as fits:
        names = [dataset] if dataset else list(fits.datasets())
        if dataset:
            fits.dataset_id(dataset)
        losses = {name: dataset_columns(fits, name)["loss"] for name in names}
        counters = fits.counters()
    if not out.parent.is_dir():
        raise UserError(f"the folder of {out} does not exist; create it or choose another --out")
    plot_fits(losses, counters["by_round"], threshold, out, title=str(store))
    _console.print(f"wrote {out}")


@fits_app.command("diff")
def diff_command(
    before: Annotated[Path, typer.Argument(help="The earlier store (or snapshot).")],
    after: Annotated[Path, typer.Argument(help="The later store (or snapshot).")],
    threshold: ThresholdOption = 100.0,
    as_json: JsonOption = False,
) -> None:
    """Which keys improved from BEFORE to AFTER, by how much, and which appeared or got worse."""
    from store.diff import diff_stores

    with _open(before) as a, _open(after) as b:
        result = diff_stores(a, b, threshold=threshold)
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{before} → {after}")
    columns = (
        "dataset",
        "common",
        "new",
        "removed",
        "improved",
        "worse",
        "mean gain",
        "median gain",
        "max gain",
        "valid before",
        "valid after",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "dataset" else "right")
    for name, entry in result.items():
        table.add_row(
            name,
            *(str(entry[k]) for k in ("common", "new", "removed", "improved", "worse")),
            *(_number(entry[k]) for k in ("mean_improvement", "median_improvement", "max_improvement")),
            str(entry["valid_before"]),
            str(entry["valid_after"]),
        )
    _console.print(table)


@fits_app.command("verify")
def verify_command(
    store: StoreOption,
    structure: Annotated[
        bool,
        typer.Option(
            "--structure", help="Also run py-lmdb's full offline page verifier (only while nothing writes)."
        ),
    ] = False,
    repair: Annotated[
        bool, typer.Option("--repair", help="Delete bad records (they are fitted again) and fix the counts.")
    ] = False,
) -> None:
    """Every record decodes, holds no NaN or negative loss, the metadata matches, the file is sound;
    exit status 0 only then. A damaged file is reported, never opened with LMDB."""
    from store.damage import salvage_command
    from store.verify import verify_store

    report = verify_store(store, structure=structure, repair=repair and not _damaged(store))
    if report.repaired:
        _console.print(f"[yellow]repaired:[/] deleted {report.repaired} bad records")
    summary = f"{report.records} records in {report.datasets} datasets"
    if report.ok:
        _console.print(f"[green]ok[/] {store}: {summary}" + (", LMDB structure checked" if structure else ""))
        return
    title = "the store file is damaged" if report.damaged else f"{report.bad_records} bad records"
    table = Table(title=f"problems in {store} ({title})")
    table.add_column("problem")
    for problem in report.problems:
        table.add_row(problem)
    _console.print(table)
    if report.damaged:
        _console.print(f"copy every readable fit into a new store with `{salvage_command(store)}`")
    elif report.bad_records and not repair:
        _console.print(f"drop the bad records with `spin fits verify --store {store} --repair`")
    raise typer.Exit(1)


def _damaged(store: Path) -> bool:
    from store.damage import check_directory
    from store.errors import StoreError

    try:
        check_directory(store, writable=False)  # includes the page walk
    except StoreError:
        return True
    return False


@fits_app.command("snapshot")
def snapshot_command(
    store: StoreOption,
    out: Annotated[Path, typer.Option("--out", help="New (or empty) directory for the copy.")],
    repack: Annotated[
        bool, typer.Option("--repack", help="Rewrite in key order so pages are full (smallest copy).")
    ] = False,
    salvage: Annotated[
        bool,
        typer.Option("--salvage", help="From a damaged store: copy every readable fit into a new store."),
    ] = False,
) -> None:
    """A consistent, compacted copy of the store, taken while writers keep writing (or, with
    --salvage, every readable fit of a damaged store, read without trusting the file)."""
    if salvage:
        from store.salvage import salvage_store

        result = salvage_store(store, out)
        _console.print(
            f"salvaged {result.records} fits in {result.datasets} datasets from {store} into {out}"
            + (f"; {result.unreadable} damaged records left out" if result.unreadable else "")
        )
        for problem in result.problems:
            _console.print(f"[yellow]damage:[/] {problem}")
        return
    with _open(store) as fits:
        dest = fits.snapshot(out, repack=repack)
        records = len(fits)
    size = (dest / "data.mdb").stat().st_size
    per_fit = f", {size / records:.0f} bytes per fit" if records else ""
    _console.print(f"snapshot of {store} written to {dest}: {size / 2**20:.1f} MiB{per_fit}")


@fits_app.command("resize")
def resize_command(
    store: StoreOption,
    dataset: Annotated[str, typer.Option("--dataset", help="The dataset whose declared size changes.")],
    size: Annotated[int, typer.Option("--size", min=0, help="Its new number of samples.")],
) -> None:
    """Change a dataset's declared number of samples on purpose (never below a stored index)."""
    from store import FitsStore

    if not (store / "data.mdb").is_file():
        raise UserError(f"no fits store at {store}; check the --store path")
    with FitsStore(store) as fits:
        old = fits.resize_dataset(dataset, size)
    _console.print(f"dataset {dataset!r} in {store}: size {old} → {size}")


@fits_app.command("migrate")
def migrate_command(store: StoreOption) -> None:
    """Upgrade a store written with an older record schema to this program's schema, in place."""
    from store.migrate import migrate_store

    _console.print(migrate_store(store))
