"""Moving fits in and out of a store: SPIN's static `.npy`, SPIN's final-fits `.npz`, and HDF5.

Formats
- SPIN static fits `<dataset>_fits.npy`: float32 or float64 (N, 82) = pose 72 + betas 10, row i
  = sample i. SPIN keeps no loss or camera with them, so rows import with source "static",
  cam_t 0 and loss `schema.UNSCORED_LOSS` (or the losses of `--loss FILE`); the first scored fit
  of a sample replaces them, and writing the same row with its real loss rescores it. Export
  writes the dataset's declared size in the imported dtype; samples without a fit are zero rows.
  Round trip is bit-exact for both dtypes: float32 rows are stored as they are, and float64 rows
  that float32 cannot hold exactly keep their float64 bytes in the store's `exact64` table.
- SPIN final fits `.npz`: `pose` (N, 72), `betas` (N, 10), `valid` (N,) = has a fit with loss
  under the threshold; this project adds `loss` (N,) (+inf where no fit) and `cam_t` (N, 3).
- HDF5: one group per dataset under `/datasets` (attribute `name`; the group name escapes '/'),
  one HDF5 dataset per field, metadata (schema version, counters, rounds, dataset sizes) in
  attributes. Importing it restores every field, write times included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from store import schema
from store.errors import StoreError
from store.fits_store import FitsStore

NUM_STATIC = schema.NUM_POSE + schema.NUM_BETAS
ProgressFn = Callable[[int, int], None]
"""Called as on_progress(done, total) after each chunk of a long import or export."""
H5_FORMAT = "spin-fits-h5"
_BATCH = 65536


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


def _keys(dataset: str, indices: Iterable[int]) -> list[str]:
    return [f"{dataset}/{int(i)}" for i in indices]


def _load_array(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise StoreError(f"{what} file {path} does not exist; check the path")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as error:
        raise StoreError(f"{path} is not a readable .npy file ({error}); export it with numpy.save") from None


def _check_rows(rows: np.ndarray, path: Path) -> None:
    if rows.ndim != 2 or rows.shape[1] != NUM_STATIC:
        raise StoreError(
            f"{path} has shape {rows.shape}; SPIN static fits are (N, {NUM_STATIC}): pose 72 + betas 10"
        )
    if rows.dtype not in (np.float32, np.float64):
        raise StoreError(f"{path} holds {rows.dtype}; convert it to float32 or float64")


def _first_nonfinite(rows: np.ndarray, path: Path) -> None:
    """A StoreError naming the first row with NaN/Inf, or a value float32 cannot hold."""
    for start in range(0, len(rows), _BATCH):
        with np.errstate(over="ignore", invalid="ignore"):
            block = np.asarray(rows[start : start + _BATCH]).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(block).all(axis=1))
        if bad.size:
            raise StoreError(
                f"{path} has NaN, Inf or a value beyond float32 range in row {start + int(bad[0])}; "
                "a NaN never enters the store, so fix or zero those rows first"
            )


def import_spin_npy(
    store: FitsStore,
    dataset: str,
    path: str | Path,
    loss: str | Path | np.ndarray | None = None,
    round: int = 0,
    on_progress: ProgressFn | None = None,
) -> ImportSummary:
    """Import SPIN static fits (N, 82) as source "static"; see the module docstring for the rules."""
    path = Path(path)
    rows = _load_array(path, "static fits")
    _check_rows(rows, path)
    _first_nonfinite(rows, path)
    count = len(rows)
    losses = _import_losses(loss, count)
    store.declare_dataset(dataset, size=count, dtype=str(rows.dtype))
    summary = ImportSummary(dataset=dataset, rows=count, accepted=0)
    for start in range(0, count, _BATCH):
        block = np.asarray(rows[start : start + _BATCH])
        indices = np.arange(start, start + len(block))
        accepted = store.put_if_better(
            _keys(dataset, indices),
            block[:, : schema.NUM_POSE],
            block[:, schema.NUM_POSE :],
            np.zeros((len(block), schema.NUM_CAM), np.float32),
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
        _report(on_progress, start + len(block), count)
    return summary


def _import_losses(loss: str | Path | np.ndarray | None, count: int) -> np.ndarray:
    if loss is None:
        return np.full(count, schema.UNSCORED_LOSS)
    if isinstance(loss, str | Path):
        where = str(loss)
        values = np.asarray(_load_array(Path(loss), "loss"), dtype=np.float64)
    else:
        where, values = "the loss array", np.asarray(loss, dtype=np.float64)
    if values.shape != (count,):
        raise StoreError(f"{where} has shape {values.shape}; it needs one loss per row, ({count},)")
    if not np.isfinite(values).all():
        raise StoreError(f"{where} has NaN or Inf losses; give every row a finite loss")
    return values


def export_spin_npy(
    store: FitsStore, dataset: str, path: str | Path, on_progress: ProgressFn | None = None
) -> ExportSummary:
    """Write (size, 82) pose + betas in the dataset's imported dtype; absent samples are zero rows."""
    path = Path(path)
    entry = _entry(store, dataset)
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
        _report(on_progress, int(present.sum()), entry["count"])
    _write_with(path, lambda temporary: _save_npy(temporary, out))
    return ExportSummary(dataset=dataset, rows=len(out), missing=int((~present).sum()), path=path)


def export_npz(
    store: FitsStore,
    dataset: str,
    path: str | Path,
    threshold: float = 100.0,
    on_progress: ProgressFn | None = None,
) -> ExportSummary:
    """SPIN final fits: pose, betas, valid (= has a fit with loss < threshold), plus loss and cam_t."""
    path = Path(path)
    entry = _entry(store, dataset)
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
        _report(on_progress, done, entry["count"])
    _write_with(
        path,
        lambda temporary: _save_npz(
            temporary, pose=pose, betas=betas, valid=loss < threshold, loss=loss, cam_t=cam_t
        ),
    )
    return ExportSummary(dataset=dataset, rows=size, missing=int(np.isinf(loss).sum()), path=path)


def import_npz(
    store: FitsStore, dataset: str, path: str | Path, round: int = 0, on_progress: ProgressFn | None = None
) -> ImportSummary:
    """Import a final-fits `.npz` as source "static": `loss` when the file has it, else unscored.

    Rows whose loss is +inf (no fit, as `export_npz` writes them) are skipped.
    """
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
    store.declare_dataset(dataset, size=count, dtype="float32")
    summary = ImportSummary(dataset=dataset, rows=count, accepted=0, skipped=count - len(keep))
    for start in range(0, len(keep), _BATCH):
        rows = keep[start : start + _BATCH]
        accepted = store.put_if_better(
            _keys(dataset, rows),
            pose[rows],
            betas[rows],
            cam_t[rows],
            loss[rows],
            round=round,
            source="static",
        ).accepted
        summary.accepted += int(accepted.sum())
        _report(on_progress, start + len(rows), len(keep))
    return summary


H5_COLUMNS: dict[str, tuple[tuple[int, ...], type]] = {
    "index": ((), np.uint32),
    "pose": ((schema.NUM_POSE,), np.float32),
    "betas": ((schema.NUM_BETAS,), np.float32),
    "cam_t": ((schema.NUM_CAM,), np.float32),
    "loss": ((), np.float64),
    "round": ((), np.uint32),
    "step": ((), np.int64),
    "time": ((), np.float64),
    "source": ((), np.uint8),  # codes into the file's `sources` attribute
}


def _h5_group_name(dataset: str) -> str:
    return dataset.replace("%", "%25").replace("/", "%2F")


def export_h5(
    store: FitsStore,
    path: str | Path,
    datasets: Sequence[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> list[ExportSummary]:
    """Every field of every record (or of `datasets`) with the store's metadata as attributes."""
    path = Path(path)
    table = store.datasets()
    names = list(table) if datasets is None else list(datasets)
    for name in names:
        store.dataset_id(name)  # a clear error for a wrong name, before writing anything
    summaries = []
    total, done = sum(table[name]["count"] for name in names), 0

    def write(handle: h5py.File) -> None:
        nonlocal done
        handle.attrs["format"] = H5_FORMAT
        handle.attrs["schema_version"] = schema.SCHEMA_VERSION
        handle.attrs["sources"] = json.dumps(schema.SOURCES)
        handle.attrs["counters"] = json.dumps(store.counters())
        handle.attrs["rounds"] = json.dumps(store.rounds())
        handle.attrs["exported_time"] = time.time()
        root = handle.create_group("datasets")
        for name in names:
            entry = table[name]
            group = root.create_group(_h5_group_name(name))
            for key in ("size", "count", "id"):
                group.attrs[key] = int(entry[key])
            group.attrs["name"], group.attrs["dtype"] = name, entry["dtype"]
            for column, (shape, dtype) in H5_COLUMNS.items():
                group.create_dataset(
                    column,
                    shape=(0, *shape),
                    maxshape=(None, *shape),
                    dtype=dtype,
                    chunks=(min(_BATCH, 8192), *shape),
                )
            group["source"].attrs["names"] = json.dumps(schema.SOURCES)
            written = 0
            for chunk in store.iter_dataset(name):
                chunk["source"] = schema.source_codes(chunk["source"], len(chunk["index"]))
                n = len(chunk["index"])
                for column in H5_COLUMNS:
                    group[column].resize(written + n, axis=0)
                    group[column][written : written + n] = chunk[column]
                written += n
                done += n
                _report(on_progress, done, total)
            if entry["dtype"] == "float64":
                exact_index, exact_rows = store.exact_rows(name)
                group.create_dataset("exact_index", data=exact_index.astype(np.uint32))
                group.create_dataset("exact_rows", data=exact_rows.reshape(-1, NUM_STATIC))
            summaries.append(
                ExportSummary(dataset=name, rows=written, missing=int(entry["size"]) - written, path=path)
            )

    _write_with(path, lambda temporary: _with_h5(temporary, write))
    return summaries


def _with_h5(path: Path, write: Callable[[h5py.File], None]) -> None:
    with h5py.File(path, "w") as handle:
        write(handle)


def import_h5(
    store: FitsStore,
    path: str | Path,
    datasets: Sequence[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> list[ImportSummary]:
    """Restore records written by `export_h5` (all datasets, or `datasets`) through put_if_better.

    Every field comes back as it was, write times included; rounds the store does not have yet
    are restored too. Records still only replace worse ones (best-so-far holds for imports).
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"HDF5 file {path} does not exist; check the path")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise StoreError(
            f"{path} is not a readable HDF5 file ({error}); write it with `spin fits export --format h5`"
        ) from None
    summaries = []
    with handle:
        if handle.attrs.get("format") != H5_FORMAT or "datasets" not in handle:
            raise StoreError(
                f"{path} was not written by `spin fits export --format h5`; import its arrays as .npy instead"
            )
        sources = json.loads(handle.attrs.get("sources", json.dumps(schema.SOURCES)))
        # In the exporting store's id order, so a restore into an empty store keeps the ids.
        ordered = sorted(handle["datasets"].values(), key=lambda group: int(group.attrs["id"]))
        groups = {str(group.attrs["name"]): group for group in ordered}
        wanted = list(groups) if datasets is None else list(datasets)
        for name in wanted:
            if name not in groups:
                raise StoreError(
                    f"{path} has no dataset {name!r} (it has: {', '.join(sorted(groups))}); check --dataset"
                )
        total, done = sum(len(groups[name]["index"]) for name in wanted), 0
        for name in wanted:
            group = groups[name]
            store.declare_dataset(name, size=int(group.attrs["size"]), dtype=str(group.attrs["dtype"]))
            summary = ImportSummary(dataset=name, rows=len(group["index"]), accepted=0)
            for start in range(0, summary.rows, _BATCH):
                part = {column: group[column][start : start + _BATCH] for column in H5_COLUMNS}
                codes = part["source"].astype(np.int64)
                if codes.size and codes.max() >= len(sources):
                    raise StoreError(f"{path}: dataset {name!r} has an unknown source code; re-export it")
                accepted = store.put_if_better(
                    _keys(name, part["index"]),
                    part["pose"],
                    part["betas"],
                    part["cam_t"],
                    part["loss"],
                    round=part["round"],
                    step=part["step"],
                    source=np.asarray(sources, dtype=object)[codes],
                    time=part["time"],
                ).accepted
                summary.accepted += int(accepted.sum())
                done += len(codes)
                _report(on_progress, done, total)
            if "exact_rows" in group and len(group["exact_index"]):
                store.put_exact_rows(name, group["exact_index"][:].astype(np.int64), group["exact_rows"][:])
                summary.exact_rows = len(group["exact_index"])
            summaries.append(summary)
        known_rounds = {entry["round"] for entry in store.rounds()}
        for entry in json.loads(handle.attrs.get("rounds", "[]")):
            if entry["round"] not in known_rounds:
                store.record_round(entry["round"], entry["summary"], time=entry["time"])
    return summaries


def _report(on_progress: ProgressFn | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def _entry(store: FitsStore, dataset: str) -> dict:
    store.dataset_id(dataset)
    return store.datasets()[dataset]


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a file object, so numpy keeps the name as given
        np.save(handle, array)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _write_with(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside `path`, then rename: a failed export leaves no half file."""
    if not path.parent.is_dir():
        raise StoreError(f"the folder of {path} does not exist; create it or choose another --out")
    temporary = path.with_name(f".{path.name}.partial")
    try:
        write(temporary)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
