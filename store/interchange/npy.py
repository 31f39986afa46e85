"""SPIN static fits `<dataset>_fits.npy` (N, 82) in and out; see `store.interchange`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import schema
from store.errors import DiskFullError, StoreError
from store.fits_store import FitsStore
from store.interchange.common import (
    BATCH,
    NUM_STATIC,
    ExportSummary,
    ImportSummary,
    ProgressFn,
    export_target,
    keys_of,
    load_array,
    refuse_bad_losses,
    report,
    stopped_import,
    write_atomically,
)


def _check_rows(rows: np.ndarray, path: Path) -> None:
    if rows.ndim != 2 or rows.shape[1] != NUM_STATIC:
        raise StoreError(
            f"{path} has shape {rows.shape}; SPIN static fits are (N, {NUM_STATIC}): pose 72 + betas 10"
        )
    if rows.dtype not in (np.float32, np.float64):
        raise StoreError(f"{path} holds {rows.dtype}; convert it to float32 or float64")


def _first_nonfinite(rows: np.ndarray, path: Path) -> None:
    """A StoreError naming the first row with NaN/Inf, or a value float32 cannot hold."""
    for start in range(0, len(rows), BATCH):
        with np.errstate(over="ignore", invalid="ignore"):
            block = np.asarray(rows[start : start + BATCH]).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            raise StoreError(
                f"{path} has NaN, Inf or a value beyond float32 range in row {start + int(bad[0])}; "
                "a NaN never enters the store, so fix or zero those rows first"
            )


@dataclass
class StaticRows:
    """A checked static-fits file: rows (N, 82) float32/float64 (memory-mapped), losses (N,).

    Scored rows (`spin fits import --data`) also carry cam_t (N, 3) and keep (N,) bool: rows whose
    scoring failed are not written.
    """

    path: Path
    rows: np.ndarray
    losses: np.ndarray
    cam_t: np.ndarray | None = None
    keep: np.ndarray | None = None


def read_spin_npy(path: str | Path, loss: str | Path | np.ndarray | None = None) -> StaticRows:
    """Load and check a static-fits file (and its losses) without touching any store."""
    path = Path(path)
    rows = load_array(path, "static fits")
    _check_rows(rows, path)
    _first_nonfinite(rows, path)
    return StaticRows(path=path, rows=rows, losses=_import_losses(loss, len(rows)))


def import_spin_npy(
    store: FitsStore,
    dataset: str,
    path: str | Path,
    loss: str | Path | np.ndarray | None = None,
    round: int = 0,
    on_progress: ProgressFn | None = None,
) -> ImportSummary:
    """Import SPIN static fits (N, 82) as source "static"; see the module docstring for the rules."""
    return write_static(store, dataset, read_spin_npy(path, loss), round=round, on_progress=on_progress)


def write_static(
    store: FitsStore, dataset: str, static: StaticRows, round: int = 0, on_progress: ProgressFn | None = None
) -> ImportSummary:
    """Write checked static rows; a size mismatch with the stored dataset fails before any write."""
    rows, losses, count = static.rows, static.losses, len(static.rows)
    store.declare_dataset(dataset, size=count, dtype=str(rows.dtype))
    keep = np.ones(count, bool) if static.keep is None else np.asarray(static.keep, bool)
    cam_t = np.zeros((count, schema.NUM_CAM), np.float32) if static.cam_t is None else static.cam_t
    summary = ImportSummary(dataset=dataset, rows=count, accepted=0, skipped=int((~keep).sum()))
    for start in range(0, count, BATCH):
        indices = np.arange(start, min(count, start + BATCH))
        indices = indices[keep[indices]]
        block = np.asarray(rows[indices])
        if not len(indices):
            report(on_progress, min(count, start + BATCH), count)
            continue
        try:
            accepted = store.put_if_better(
                keys_of(dataset, indices),
                block[:, : schema.NUM_POSE],
                block[:, schema.NUM_POSE :],
                cam_t[indices],
                losses[indices],
                round=round,
                source="static",
            ).accepted
            summary.accepted += int(accepted.sum())
            if block.dtype == np.float64:
                rounded = block.astype(np.float32).astype(np.float64)
                inexact = (rounded.view(np.uint64) != block.view(np.uint64)).any(axis=1) & accepted
                if inexact.any():
                    store.put_exact_rows(dataset, indices[inexact], block[inexact])
                    summary.exact_rows += int(inexact.sum())
        except DiskFullError as error:
            raise stopped_import(error, static.path, dataset, start, count) from None
        report(on_progress, min(count, start + BATCH), count)
    return summary


def _import_losses(loss: str | Path | np.ndarray | None, count: int) -> np.ndarray:
    if loss is None:
        return np.full(count, schema.UNSCORED_LOSS)
    if isinstance(loss, str | Path):
        where = str(loss)
        values = np.asarray(load_array(Path(loss), "loss"), dtype=np.float64)
    else:
        where, values = "the loss array", np.asarray(loss, dtype=np.float64)
    if values.shape != (count,):
        raise StoreError(f"{where} has shape {values.shape}; it needs one loss per row, ({count},)")
    refuse_bad_losses(values, where)
    return values


def export_spin_npy(
    store: FitsStore,
    dataset: str,
    path: str | Path,
    on_progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write (size, 82) pose + betas in the dataset's imported dtype; absent samples are zero rows.

    An existing `path` is replaced only with `overwrite=True`."""
    path, entry = export_target(store, dataset, path, overwrite)
    dtype = np.dtype(entry["dtype"])
    out = np.zeros((entry["size"], NUM_STATIC), dtype=dtype)
    present = np.zeros(entry["size"], dtype=bool)
    exact_index, exact_rows = store.exact_rows(dataset) if dtype == np.float64 else (np.zeros(0, int), None)
    for chunk in store.iter_dataset(dataset):
        index = chunk["index"]
        values = np.concatenate([chunk["pose"], chunk["betas"]], axis=1)
        out[index] = values
        present[index] = True
        if exact_rows is not None and exact_index.size:
            at = np.clip(np.searchsorted(exact_index, index), 0, len(exact_index) - 1)
            has_row = (exact_index[at] == index) & (chunk["source"] == "static")
            # The exact row still describes the record only if the record holds its float32 rounding.
            same = (exact_rows[at].astype(np.float32).view(np.uint32) == values.view(np.uint32)).all(axis=1)
            use = has_row & same
            out[index[use]] = exact_rows[at[use]]
        report(on_progress, int(present.sum()), entry["count"])
    write_atomically(path, lambda temporary: _save_npy(temporary, out), overwrite=overwrite)
    return ExportSummary(dataset=dataset, rows=len(out), missing=int((~present).sum()), path=path)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object, so numpy keeps the name as given
        np.save(handle, array)
