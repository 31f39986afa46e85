"""HDF5 export of every field of every record, with the store's metadata; and its restore."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
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
    check_output,
    keys_of,
    refuse_bad_losses,
    report,
    stopped_import,
    write_atomically,
)
from store.metadata import is_declared, size_mismatch

H5_FORMAT = "spin-fits-h5"

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
    overwrite: bool = False,
) -> list[ExportSummary]:
    """Every field of every record (or of `datasets`) with the store's metadata as attributes.

    An existing `path` is replaced only with `overwrite=True`."""
    path = Path(path)
    check_output(path, overwrite)
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
            group.attrs["declared"] = is_declared(entry)
            for column, (shape, dtype) in H5_COLUMNS.items():
                group.create_dataset(
                    column,
                    shape=(0, *shape),
                    maxshape=(None, *shape),
                    dtype=dtype,
                    chunks=(min(BATCH, 8192), *shape),
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
                report(on_progress, done, total)
            if entry["dtype"] == "float64":
                exact_index, exact_rows = store.exact_rows(name)
                group.create_dataset("exact_index", data=exact_index.astype(np.uint32))
                group.create_dataset("exact_rows", data=exact_rows.reshape(-1, NUM_STATIC))
            summaries.append(
                ExportSummary(dataset=name, rows=written, missing=int(entry["size"]) - written, path=path)
            )

    write_atomically(path, lambda temporary: _with_h5(temporary, write), overwrite=overwrite)
    return summaries


def _with_h5(path: Path, write: Callable[[h5py.File], None]) -> None:
    # Built in memory, then written as plain bytes: HDF5 cannot survive a failed write (a full
    # disk leaves a half-closed file that crashes the interpreter at exit), Python's write can.
    # The export is about as large as the store's records, which export_npz holds in memory too.
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write(handle)
    with open(path, "wb") as raw:
        raw.write(buffer.getbuffer())


def import_h5(
    store: FitsStore,
    path: str | Path,
    datasets: Sequence[str] | None = None,
    on_progress: ProgressFn | None = None,
) -> list[ImportSummary]:
    """Restore records written by `export_h5` (all datasets, or `datasets`) through put_if_better.

    Every field comes back as it was, write times included; rounds the store does not have yet
    are restored too. Records still only replace worse ones (best-so-far holds for imports). The
    whole file is checked first (`check_h5`), and the dataset sizes against the store's, so a
    damaged export or a size mismatch is refused before anything is written.
    """
    path = Path(path)
    check_h5(path, datasets)
    with _open_h5(path) as handle:
        groups = _groups(handle)
        wanted = list(groups) if datasets is None else list(datasets)
        sources = json.loads(handle.attrs.get("sources", json.dumps(schema.SOURCES)))
        stored = store.datasets()
        for name in wanted:
            size = int(groups[name].attrs["size"])
            problem = size_mismatch(store.path, name, stored[name], size) if name in stored else None
            if problem:
                raise StoreError(f"{path}: {problem}")
        total, done = sum(len(groups[name]["index"]) for name in wanted), 0
        summaries = []
        for name in wanted:
            group = groups[name]
            declared = bool(group.attrs.get("declared", True))
            store.declare_dataset(
                name, size=int(group.attrs["size"]) if declared else None, dtype=str(group.attrs["dtype"])
            )
            summary = ImportSummary(dataset=name, rows=len(group["index"]), accepted=0)
            for start in range(0, summary.rows, BATCH):
                part = {column: group[column][start : start + BATCH] for column in H5_COLUMNS}
                try:
                    accepted = store.put_if_better(
                        keys_of(name, part["index"]),
                        part["pose"],
                        part["betas"],
                        part["cam_t"],
                        part["loss"],
                        round=part["round"],
                        step=part["step"],
                        source=np.asarray(sources, dtype=object)[part["source"].astype(np.int64)],
                        time=part["time"],
                    ).accepted
                except DiskFullError as error:
                    raise stopped_import(error, path, name, start, summary.rows) from None
                summary.accepted += int(accepted.sum())
                done += len(part["index"])
                report(on_progress, done, total)
            if "exact_rows" in group and len(group["exact_index"]):
                store.put_exact_rows(name, group["exact_index"][:].astype(np.int64), group["exact_rows"][:])
                summary.exact_rows = len(group["exact_index"])
            summaries.append(summary)
        known_rounds = {entry["round"] for entry in store.rounds()}
        for entry in json.loads(handle.attrs.get("rounds", "[]")):
            if entry["round"] not in known_rounds:
                store.record_round(entry["round"], entry["summary"], time=entry["time"])
    return summaries


def _open_h5(path: Path) -> h5py.File:
    if not path.is_file():
        raise StoreError(f"HDF5 file {path} does not exist; check the path")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise StoreError(
            f"{path} is not a readable HDF5 file ({error}); write it with `spin fits export --format h5`"
        ) from None


def _groups(handle: h5py.File) -> dict[str, h5py.Group]:
    # In the exporting store's id order, so a restore into an empty store keeps the ids.
    ordered = sorted(handle["datasets"].values(), key=lambda group: int(group.attrs["id"]))
    return {str(group.attrs["name"]): group for group in ordered}


def check_h5(path: str | Path, datasets: Sequence[str] | None = None) -> None:
    """Check an export without touching any store: format, columns, and every row of every wanted
    dataset (finite numbers, a loss >= 0, a known source, an index below the dataset's size)."""
    path = Path(path)
    with _open_h5(path) as handle:
        if handle.attrs.get("format") != H5_FORMAT or "datasets" not in handle:
            raise StoreError(
                f"{path} was not written by `spin fits export --format h5`; import its arrays as .npy instead"
            )
        try:
            sources = json.loads(handle.attrs.get("sources", json.dumps(schema.SOURCES)))
            groups = _groups(handle)
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise StoreError(f"{path} is damaged ({error}); export the store again") from None
        unknown = [str(source) for source in sources if source not in schema.SOURCES]
        if unknown:
            raise StoreError(f"{path} names unknown fit sources {unknown}; re-export it")
        wanted = list(groups) if datasets is None else list(datasets)
        for name in wanted:
            if name not in groups:
                raise StoreError(
                    f"{path} has no dataset {name!r} (it has: {', '.join(sorted(groups))}); check --dataset"
                )
            try:
                _check_group(path, name, groups[name], len(sources))
            except (KeyError, ValueError, TypeError, OSError) as error:
                raise StoreError(
                    f"{path}: dataset {name!r} is damaged ({error}); export the store again"
                ) from None


def _check_group(path: Path, name: str, group: h5py.Group, source_count: int) -> None:
    size, rows = int(group.attrs["size"]), len(group["index"])
    for column, (shape, _) in H5_COLUMNS.items():
        if group[column].shape != (rows, *shape):
            raise StoreError(
                f"{path}: dataset {name!r} column {column} has shape {group[column].shape}; re-export it"
            )
    previous = -1
    for start in range(0, rows, BATCH):
        part = {column: group[column][start : start + BATCH] for column in H5_COLUMNS}
        where = f"{path} dataset {name!r} (row {start} on)"
        with np.errstate(over="ignore", invalid="ignore"):
            numbers = np.concatenate([part["pose"], part["betas"], part["cam_t"]], axis=1).astype(np.float32)
        bad = np.flatnonzero(~np.isfinite(numbers).all(axis=1))
        if bad.size:
            raise StoreError(f"{where} has NaN or Inf in row {start + int(bad[0])}; export the store again")
        refuse_bad_losses(
            np.asarray(part["loss"], np.float64),
            f"{path} dataset {name!r}",
            rows=np.arange(start, start + len(part["loss"])),
        )
        if part["source"].size and int(part["source"].max()) >= source_count:
            raise StoreError(f"{where} has an unknown source code; export the store again")
        index = part["index"].astype(np.int64)
        if index.size and (index.max() >= size or (np.diff(index) <= 0).any() or index[0] <= previous):
            raise StoreError(
                f"{where} has indices out of order, repeated or past the dataset size {size}; "
                "export the store again"
            )
        previous = int(index[-1]) if index.size else previous
