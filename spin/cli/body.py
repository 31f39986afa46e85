"""`spin body ...`: write the synthetic body model, inspect a model file, convert .pkl to .npz."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

body_app = typer.Typer(help="Body model files: synthesise the stand-in model, inspect or convert SMPL files.")


@body_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", help="Folder to write the synthetic model set into."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator (same seed, same files)."),
) -> None:
    """Write the synthetic SMPL stand-in (model, extra regressor, GMM prior, mean params) into OUT."""
    from rich.console import Console

    from spin.body.synthetic import synthesize_body

    console = Console()
    with console.status(f"Synthesising body model (seed {seed})..."):
        files = synthesize_body(out, seed=seed)
    for label, path in (
        ("model", files.model),
        ("extra regressor", files.joint_regressor_extra),
        ("pose prior", files.prior),
        ("mean params", files.mean_params),
        ("H36M regressor", files.joint_regressor_h36m),
        ("male model", files.model_male),
        ("female model", files.model_female),
    ):
        console.print(f"[green]wrote[/green] {label}: {path}")


@body_app.command("info")
def info(
    path: Path = typer.Argument(..., help="SMPL model file (.pkl or .npz), or a smplx/SPIN model folder."),
    joint_regressor_extra: Optional[Path] = typer.Option(
        None, "--joint-regressor-extra", help="SPIN's J_regressor_extra.npy, if not inside the model file."
    ),
) -> None:
    """Print the model's vertices, joints, shape components, faces, and which extras are present.

    For a folder: also which files it holds for each role (models per gender, extra and H36M
    regressors, GMM prior, mean parameters), as `--body-model DIR` would use them.
    """
    from rich.console import Console

    console = Console()
    if path.is_dir():
        from spin.body.folders import scan_body_folder

        contents = scan_body_folder(path)
        console.print(_folder_table(contents))
        model = contents.neutral  # a UserError saying what the folder lacks, after the table
        joint_regressor_extra = joint_regressor_extra or contents.extras.get("joint_regressor_extra")
        path = model
    console.print(_model_table(path, joint_regressor_extra))


def _folder_table(contents):
    from rich.table import Table

    from spin.body.folders import GENDERS

    def shown(found: Path) -> str:  # relative to the folder where it is inside it
        try:
            return str(found.relative_to(contents.folder))
        except ValueError:
            return str(found)

    table = Table(title=f"Body model folder {contents.folder}")
    table.add_column("role")
    table.add_column("file", overflow="fold")
    for gender in GENDERS:
        found = contents.models.get(gender)
        table.add_row(f"{gender} model", shown(found) if found else "[red]not found[/red]")
    labels = {"joint_regressor_extra": "J_regressor_extra (9 SPIN joints)",
              "joint_regressor_h36m": "J_regressor_h36m (17 H36M joints)",
              "prior": "GMM pose prior", "mean_params": "mean parameters"}
    for role, label in labels.items():
        found = contents.extras.get(role)
        fallback = " (the synthetic set's is used)" if role in ("prior", "mean_params") else ""
        table.add_row(label, shown(found) if found else f"[yellow]not found[/yellow]{fallback}")
    return table


def _model_table(path: Path, joint_regressor_extra: Optional[Path]):
    import numpy as np
    from rich.table import Table

    from spin.body.loading import load_body_arrays

    arrays = load_body_arrays(path, joint_regressor_extra)
    v = arrays.v_template
    height = float(v[:, 1].max() - v[:, 1].min())
    if arrays.J_regressor_extra is None:
        extra = "absent (pass --joint-regressor-extra)"
    elif joint_regressor_extra is not None:
        extra = f"from {joint_regressor_extra}"
    else:
        extra = "inside the model file"
    table = Table(title=f"Body model {path}")
    table.add_column("property")
    table.add_column("value")
    rows = [
        ("kind", "synthetic stand-in (not SMPL)" if arrays.synthetic else "SMPL-layout model"),
        ("vertices", str(v.shape[0])),
        ("joints", str(arrays.J_regressor.shape[0])),
        ("shape components", str(arrays.num_betas)),
        (
            "pose correctives",
            f"{arrays.posedirs.shape[-1]} ({'non-zero' if np.any(arrays.posedirs) else 'all zero'})",
        ),
        ("faces", str(arrays.f.shape[0])),
        ("template height", f"{height:.3f} m"),
        ("J_regressor_extra (9 SPIN joints)", extra),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@body_app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="SMPL .pkl or .npz (official chumpy pickles too), or a folder."),
    dst: Path = typer.Argument(..., help="Output .npz."),
    joint_regressor_extra: Optional[Path] = typer.Option(
        None, "--joint-regressor-extra", help="Embed this J_regressor_extra.npy in the output."
    ),
    force: bool = typer.Option(False, "--force", help="Replace DST if it exists."),
) -> None:
    """Convert an SMPL model file to a plain .npz (no chumpy, no pickle) with the same arrays."""
    from rich.console import Console

    from spin.atomic_io import check_new_output
    from spin.body.loading import load_body_arrays, save_body_npz

    check_new_output(dst, force, "Output file")  # before reading: a refused output costs nothing
    arrays = load_body_arrays(src, joint_regressor_extra)
    out = save_body_npz(arrays, dst, force=force)
    Console().print(f"[green]wrote[/green] {out}")
