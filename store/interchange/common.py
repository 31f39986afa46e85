"""What every interchange format shares: summaries, progress, keys, and writing files safely."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import schema
from store.atomic import check_output, write_atomically
from store.errors import DiskFullError, StoreError
from store.fits_store import FitsStore

NUM_STATIC = schema.NUM_POSE + schema.NUM_BETAS
ProgressFn = Callable[[int, int], None]
"""Called as on_progress(done, total) after each chunk of a long import or export."""
BATCH = 65536


@dataclass
class ImportSummary:
    dataset: str
    rows: int
    accepted: int
    skipped: int = 0  # rows without a fit in the file (npz rows with an infinite loss)
    exact_rows: int = 0  # float64 rows kept exactly beside their float32 record


@dataclass
class ExportSummary:
    dataset: str
    rows: int
    missing: int  # rows without a fit, written as zeros (npy) or valid=False (npz)
    path: Path


def keys_of(dataset: str, indices: Iterable[int]) -> list[str]:
    return [f"{dataset}/{int(i)}" for i in indices]


def load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise StoreError(f"{what} file {path} does not exist; check the path")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise StoreError(f"{path} is not a readable .npy file ({error}); export it with numpy.save") from None


def report(on_progress: ProgressFn | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def dataset_entry(store: FitsStore, dataset: str) -> dict:
    store.dataset_id(dataset)
    return store.datasets()[dataset]


def export_target(store: FitsStore, dataset: str, path: str | Path, overwrite: bool) -> tuple[Path, dict]:
    """(the output path, the dataset's table entry) after checking both, before any work."""
    path = Path(path)
    check_output(path, overwrite)
    return path, dataset_entry(store, dataset)


def first_bad_loss(loss: np.ndarray) -> int | None:
    """The first row whose loss is NaN, Inf or negative, or None (a stored loss is finite and >= 0)."""
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~np.isfinite(loss) | (loss < 0))
    return int(bad[0]) if bad.size else None


def refuse_bad_losses(loss: np.ndarray, where: str, rows: np.ndarray | None = None) -> None:
    """A StoreError naming the first NaN, Inf or negative loss; `rows` maps positions to file rows."""
    bad = first_bad_loss(loss)
    if bad is not None:
        row = bad if rows is None else int(rows[bad])
        raise StoreError(
            f"{where} has loss {loss[bad]!r} in row {row}; a loss must be finite and >= 0 "
            "(nothing was imported), so fix that row or leave its fit out"
        )


def stopped_import(error: DiskFullError, path: Path, dataset: str, done: int, total: int) -> DiskFullError:
    """The disk-full error of an import, saying which rows are stored."""
    return DiskFullError(
        f"{error} (import of {path} into dataset {dataset!r} stopped after {done} of {total} rows; "
        "those are stored, and importing the file again skips them)"
    )


__all__ = ["check_output", "write_atomically"]  # the interchange formats import them from here
