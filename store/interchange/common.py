"""What every interchange format shares: summaries, progress, keys, and writing files safely."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from store import schema
from store.errors import StoreError
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


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside `path`, then rename: a failed export leaves no half file."""
    if not path.parent.is_dir():
        raise StoreError(f"the folder of {path} does not exist; create it or choose another --out")
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
