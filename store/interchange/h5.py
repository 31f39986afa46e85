"""HDF5 export of every field of every record, with the store's metadata; and its restore."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from store import schema
from store.errors import StoreError
from store.fits_store import FitsStore
from store.interchange.common import (
    BATCH,
    NUM_STATIC,
    ExportSummary,
    ImportSummary,
    ProgressFn,
    keys_of,
    report,
    write_atomically,
)

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

    write_atomically(path, lambda temporary: _with_h5(temporary, write))
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
            for start in range(0, summary.rows, BATCH):
                part = {column: group[column][start : start + BATCH] for column in H5_COLUMNS}
                codes = part["source"].astype(np.int64)
                if codes.size and codes.max() >= len(sources):
                    raise StoreError(f"{path}: dataset {name!r} has an unknown source code; re-export it")
                accepted = store.put_if_better(
                    keys_of(name, part["index"]),
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
