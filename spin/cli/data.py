"""`spin data`: make a synthetic SPIN-format dataset, pack a dataset's images into HDF5."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spin.cli.options import BodyModelOption, JointRegressorExtraOption

data_app = typer.Typer(no_args_is_help=True, add_completion=False)
_console = Console()


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Output folder (npz files, images/, metadata).")],
    train: Annotated[int, typer.Option("--train", min=0, help="Number of training images.")] = 1000,
    test: Annotated[int, typer.Option("--test", min=0, help="Number of test images.")] = 200,
    image_size: Annotated[int, typer.Option("--image-size", min=16, help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the dataset is a function of it.")] = 0,
    gt_fraction: Annotated[
        float, typer.Option("--gt-fraction", min=0.0, max=1.0,
                            help="Share of training images that keep ground-truth SMPL (test: all).")
    ] = 0.2,
    keypoint_noise: Annotated[
        float, typer.Option("--keypoint-noise", min=0.0, help="OpenPose keypoint noise std, 224-crop pixels.")
    ] = 2.5,
    occlusion: Annotated[
        float, typer.Option("--occlusion", min=0.0, max=1.0, help="Chance an OpenPose keypoint is missing.")
    ] = 0.1,
    joints3d_for_all: Annotated[
        bool, typer.Option("--joints3d-for-all/--joints3d-with-smpl-only",
                           help="3D joints S for every row, or only for rows that keep SMPL ground truth.")
    ] = True,
    image_format: Annotated[str, typer.Option("--image-format", help="png (lossless) or jpg.")] = "png",
    body_model: BodyModelOption = None,
    joint_regressor_extra: JointRegressorExtraOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a dataset already in OUT.")] = False,
) -> None:
    """Render people from the body model as colour-coded body parts, with keypoints, into SPIN's format."""
    import torch

    from spin.atomic_io import check_new_output, check_output_dir

    check_output_dir(out, "Dataset output folder")
    for split in ("train", "test"):  # the files synthesize_dataset writes
        check_new_output(out / f"synthetic_{split}.npz", force, "Dataset file")
    from spin.body import BodyModel, resolve_body_files
    from spin.data.synthetic import SynthConfig, synthesize_dataset

    torch.set_num_threads(1)
    body = BodyModel.from_files(resolve_body_files(body_model, joint_regressor_extra))
    config = SynthConfig(keypoint_noise_px=keypoint_noise, occlusion_prob=occlusion,
                         joints3d_for_all=joints3d_for_all, image_format=image_format)
    start = time.perf_counter()
    paths = synthesize_dataset(out, body, n_train=train, n_test=test, image_size=image_size, seed=seed,
                               gt_fraction=gt_fraction, config=config, progress=True)
    elapsed = time.perf_counter() - start
    table = Table(title=f"synthetic dataset · {out}")
    for column in ("split", "file", "images", "with SMPL"):
        table.add_column(column)
    for split, path in paths.items():
        n = train if split == "train" else test
        kept = round(gt_fraction * n) if split == "train" else n
        table.add_row(split, str(path), str(n), str(kept))
    _console.print(table)
    _console.print(f"{train + test} images of {image_size}px in {elapsed:.1f}s; "
                   f"images under {out / 'images'}")


@data_app.command("pack")
def pack_command(
    data: Annotated[Path, typer.Option("--data", help="SPIN-format dataset .npz.")],
    images: Annotated[Path, typer.Option("--images", help="Folder its imgname paths are relative to.")],
    out: Annotated[Path, typer.Option("--out", help="HDF5 pack to write (e.g. PACK.h5).")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Pack a dataset's image files (bytes as they are) and annotations into one HDF5 file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from spin.data.h5pack import pack_images

    bar = Progress(TextColumn("packing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    task = bar.add_task("images", total=None)

    def advance(done: int, total: int) -> None:
        if done == 1:  # started only once the inputs checked out, so an error prints alone
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        pack_images(data, images, out, progress=advance, force=force)
    finally:
        if bar.live.is_started:
            bar.stop()
    _console.print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")
