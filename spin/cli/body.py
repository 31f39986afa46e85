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
    ):
        console.print(f"[green]wrote[/green] {label}: {path}")


@body_app.command("info")
def info(
    path: Path = typer.Argument(..., help="SMPL model file (.pkl or .npz)."),
    joint_regressor_extra: Optional[Path] = typer.Option(
        None, "--joint-regressor-extra", help="SPIN's J_regressor_extra.npy, if not inside the model file."
    ),
) -> None:
    """Print the model's vertices, joints, shape components, faces, and which extras are present."""
    import numpy as np
    from rich.console import Console
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
    Console().print(table)


@body_app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="SMPL .pkl (official chumpy pickles included) or .npz."),
    dst: Path = typer.Argument(..., help="Output .npz."),
    joint_regressor_extra: Optional[Path] = typer.Option(
        None, "--joint-regressor-extra", help="Embed this J_regressor_extra.npy in the output."
    ),
) -> None:
    """Convert an SMPL model file to a plain .npz (no chumpy, no pickle) with the same arrays."""
    from rich.console import Console

    from spin.body.loading import load_body_arrays, save_body_npz

    arrays = load_body_arrays(src, joint_regressor_extra)
    out = save_body_npz(arrays, dst)
    Console().print(f"[green]wrote[/green] {out}")
