"""SPIN final fits `.npz` (pose, betas, valid; plus loss and cam_t) in and out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import schema
from store.errors import DiskFullError, StoreError
from store.fits_store import FitsStore
from store.interchange.common import (
    BATCH,
    ExportSummary,
    ImportSummary,
    ProgressFn,
    export_target,
    keys_of,
    refuse_bad_losses,
    report,
    stopped_import,
    write_atomically,
)


def export_npz(
    store: FitsStore,
    dataset: str,
    path: str | Path,
    threshold: float = 100.0,
    on_progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """SPIN final fits: pose, betas, valid (= has a fit with loss < threshold), plus loss and cam_t.

    An existing `path` is replaced only with `overwrite=True`."""
    path, entry = export_target(store, dataset, path, overwrite)
    size, done = entry["size"], 0
    pose = np.zeros((size, schema.NUM_POSE), np.float32)
    betas = np.zeros((size, schema.NUM_BETAS), np.float32)
    cam_t = np.zeros((size, schema.NUM_CAM), np.float32)
    loss = np.full(size, np.inf)
    for chunk in store.iter_dataset(dataset):
        index = chunk["index"]
        pose[index], betas[index], cam_t[index], loss[index] = (
            chunk["pose"],
            chunk["betas"],
            chunk["cam_t"],
            chunk["loss"],
        )
        done += len(index)
        report(on_progress, done, entry["count"])
    write_atomically(
        path,
        lambda temporary: _save_npz(
            temporary, pose=pose, betas=betas, valid=loss < threshold, loss=loss, cam_t=cam_t
        ),
        overwrite=overwrite,
    )
    return ExportSummary(dataset=dataset, rows=size, missing=int(np.isinf(loss).sum()), path=path)


@dataclass
class FinalFits:
    """A checked final-fits file: (N, 72), (N, 10), (N, 3), (N,) arrays and the rows with a fit."""

    path: Path
    pose: np.ndarray
    betas: np.ndarray
    cam_t: np.ndarray
    loss: np.ndarray
    keep: np.ndarray  # (M,) rows whose loss is not +inf


def import_npz(
    store: FitsStore, dataset: str, path: str | Path, round: int = 0, on_progress: ProgressFn | None = None
) -> ImportSummary:
    """Import a final-fits `.npz` as source "static": `loss` when the file has it, else unscored.

    Rows whose loss is +inf (no fit, as `export_npz` writes them) are skipped.
    """
    return write_final(store, dataset, read_npz(path), round=round, on_progress=on_progress)


def read_npz(path: str | Path) -> FinalFits:
    """Load and check a final-fits file without touching any store."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"final fits file {path} does not exist; check the path")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise StoreError(f"{path} is not a readable .npz file ({error}); write it with numpy.savez") from None
    with archive:
        for name in ("pose", "betas"):
            if name not in archive.files:
                raise StoreError(
                    f"{path} has no `{name}` array; SPIN final fits need `pose` (N, 72) and `betas` (N, 10)"
                )
        pose, betas = np.asarray(archive["pose"]), np.asarray(archive["betas"])
        count = pose.shape[0] if pose.ndim else 0
        if pose.shape != (count, schema.NUM_POSE) or betas.shape != (count, schema.NUM_BETAS):
            raise StoreError(
                f"{path}: `pose` is {pose.shape} and `betas` {betas.shape}; need (N, 72) and (N, 10)"
            )
        loss = (
            np.asarray(archive["loss"], np.float64)
            if "loss" in archive.files
            else np.full(count, schema.UNSCORED_LOSS)
        )
        cam_t = (
            np.asarray(archive["cam_t"], np.float32)
            if "cam_t" in archive.files
            else np.zeros((count, 3), np.float32)
        )
    if loss.shape != (count,) or cam_t.shape != (count, schema.NUM_CAM):
        raise StoreError(
            f"{path}: `loss` is {loss.shape} and `cam_t` {cam_t.shape}; need ({count},) and ({count}, 3)"
        )
    keep = np.flatnonzero(~np.isposinf(loss))
    with np.errstate(over="ignore", invalid="ignore"):
        stacked = np.concatenate([pose[keep], betas[keep], cam_t[keep]], axis=1).astype(np.float32)
    bad = np.flatnonzero(~(np.isfinite(stacked).all(axis=1) & np.isfinite(loss[keep])))
    if bad.size:
        raise StoreError(
            f"{path} has NaN, Inf or a value beyond float32 range in row {int(keep[bad[0]])}; "
            "a NaN never enters the store, so fix or zero those rows first"
        )
    refuse_bad_losses(loss[keep], str(path), rows=keep)
    return FinalFits(path=path, pose=pose, betas=betas, cam_t=cam_t, loss=loss, keep=keep)


def write_final(
    store: FitsStore, dataset: str, final: FinalFits, round: int = 0, on_progress: ProgressFn | None = None
) -> ImportSummary:
    """Write checked final fits; a size mismatch with the stored dataset fails before any write."""
    pose, betas, cam_t, loss, keep, count = (
        final.pose,
        final.betas,
        final.cam_t,
        final.loss,
        final.keep,
        len(final.loss),
    )
    store.declare_dataset(dataset, size=count, dtype="float32")
    summary = ImportSummary(dataset=dataset, rows=count, accepted=0, skipped=count - len(keep))
    for start in range(0, len(keep), BATCH):
        rows = keep[start : start + BATCH]
        try:
            accepted = store.put_if_better(
                keys_of(dataset, rows),
                pose[rows],
                betas[rows],
                cam_t[rows],
                loss[rows],
                round=round,
                source="static",
            ).accepted
        except DiskFullError as error:
            raise stopped_import(error, final.path, dataset, start, len(keep)) from None
        summary.accepted += int(accepted.sum())
        report(on_progress, start + len(rows), len(keep))
    return summary


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
