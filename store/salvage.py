"""Copy every readable fit of a damaged store into a new store, without trusting the damaged file.

Nothing here hands the damaged file to liblmdb: `store.pages` reads it with bounded checks. Fit
records are taken from every leaf page of the file, reachable or not (a record carries its own
checksum, so a damaged branch page loses no fit whose leaf survived). A page may also hold an
older version of a key, but a key's record is only ever replaced by one with a lower loss, so the
lowest-loss valid record of each key is its latest. The dataset table, exact float64 rows and
round entries come from the committed tree when it is readable; datasets whose table entry is
lost are named `salvaged-<id>`. The new store is built in a temporary directory and renamed into
place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from store import pages, schema
from store.atomic import copy_failed, publish_directory, staging_for
from store.environment import EXACT_DB, EXACT_ROW_SIZE, META_DATASETS, META_DB, ROUND_PREFIX
from store.errors import StoreError
from store.fits_store import FitsStore

_CHUNK = 65536


@dataclass
class SalvageReport:
    source: str
    dest: str
    records: int = 0  # fits copied
    unreadable: int = 0  # record-sized values that failed their checksum or checks
    datasets: int = 0
    problems: list[str] = field(default_factory=list)  # damage found while reading


def salvage_store(path: str | os.PathLike, dest: str | os.PathLike) -> SalvageReport:
    """Build a new store at `dest` (new or empty directory) from what `path` still holds."""
    path, dest = Path(path).expanduser().resolve(), Path(dest).expanduser().resolve()
    if not (path / "data.mdb").is_file() or (path / "data.mdb").stat().st_size == 0:
        raise StoreError(f"{path} has no data.mdb with any content; there is nothing to salvage")
    if dest == path or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise StoreError(f"salvage destination {dest} is the store itself or not a new or empty directory")
    report = SalvageReport(source=str(path), dest=str(dest))
    try:
        tree = pages.walk(path, collect=True, complete=False)
        records, report.unreadable = _best_records(path)
    except (pages.DamagedFile, OSError) as error:
        raise StoreError(f"cannot read {path} at all ({error}); nothing can be salvaged from it") from None
    report.problems = tree.problems[:20]
    meta = dict(tree.tables.get(META_DB, []))
    table = _load(meta.get(META_DATASETS), {})
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_for(dest)
    try:
        with FitsStore(staging, sync=False) as target:
            names = _declare(target, table, records)
            report.datasets = len(names)
            report.records = _copy_records(target, names, records)
            _copy_exact(target, names, tree.tables.get(EXACT_DB, []))
            for key, value in sorted(meta.items()):
                entry = _load(value, None) if key.startswith(ROUND_PREFIX) else None
                if isinstance(entry, dict) and {"round", "summary", "time"} <= set(entry):
                    target.record_round(entry["round"], entry["summary"], time=entry["time"])
        publish_directory(staging, dest)
    except OSError as error:
        raise copy_failed(dest, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _load(raw: bytes | None, default: Any) -> Any:
    try:
        return default if raw is None else json.loads(raw)
    except ValueError:
        return default


def _best_records(path: Path) -> tuple[np.ndarray, int]:
    """(keys (n,) uint64 key ints, records (n,)) with the lowest-loss valid record per key; bad count."""
    keys, values = [], []
    for key, value in pages.scan_leaves(path, schema.KEY_SIZE, schema.RECORD_SIZE):
        keys.append(key)
        values.append(value)
    if not values:
        return np.zeros(0, dtype=[("key", "<u8"), ("record", schema.RECORD_DTYPE)]), 0
    records = schema.decode_records(b"".join(values), len(values))
    ints = schema.decode_key_ints(b"".join(keys), len(keys))
    good = ~schema.record_problems(records)
    ints, records = ints[good], records[good]
    order = np.lexsort((records["loss"], ints))
    first = np.ones(len(order), dtype=bool)
    first[1:] = ints[order][1:] != ints[order][:-1]
    chosen = order[first]
    out = np.zeros(len(chosen), dtype=[("key", "<u8"), ("record", schema.RECORD_DTYPE)])
    out["key"], out["record"] = ints[chosen], records[chosen]
    return out, int((~good).sum())


def _declare(target: FitsStore, table: Any, records: np.ndarray) -> dict[int, str]:
    """Register the datasets (by id order, so ids carry over); id → name."""
    entries = table if isinstance(table, dict) else {}
    by_id = {
        e["id"]: (n, e) for n, e in entries.items() if isinstance(e, dict) and isinstance(e.get("id"), int)
    }
    ids = sorted(set(by_id) | set((records["key"] >> np.uint64(32)).astype(np.int64).tolist()))
    names: dict[int, str] = {}
    for dataset_id in ids:
        name, entry = by_id.get(dataset_id, (f"salvaged-{dataset_id}", {}))
        declared = bool(entry.get("declared", entry.get("size", 0) > 0))
        mine = records["key"] >> np.uint64(32) == dataset_id
        top = int((records["key"][mine] & np.uint64(0xFFFFFFFF)).max()) + 1 if mine.any() else 0
        size = max(int(entry.get("size", 0)), top) if declared else None
        dtype = entry.get("dtype") if entry.get("dtype") in ("float32", "float64") else None
        target.declare_dataset(name, size=size, dtype=dtype)
        names[dataset_id] = name
    return names


def _copy_records(target: FitsStore, names: dict[int, str], records: np.ndarray) -> int:
    copied = 0
    for start in range(0, len(records), _CHUNK):
        part = records[start : start + _CHUNK]
        ids = (part["key"] >> np.uint64(32)).astype(np.int64)
        indices = (part["key"] & np.uint64(0xFFFFFFFF)).astype(np.int64)
        fields = schema.record_fields(part["record"])
        result = target.put_if_better(
            [schema.format_key(names[int(d)], int(i)) for d, i in zip(ids, indices, strict=True)],
            fields["pose"],
            fields["betas"],
            fields["cam_t"],
            fields["loss"],
            round=fields["round"],
            step=fields["step"],
            source=fields["source"],
            time=fields["time"],
        )
        copied += int(result.accepted.sum())
    return copied


def _copy_exact(target: FitsStore, names: dict[int, str], items: list[tuple[bytes, bytes]]) -> None:
    by_dataset: dict[int, list[tuple[int, np.ndarray]]] = {}
    for key, value in items:
        if len(key) != schema.KEY_SIZE or len(value) != EXACT_ROW_SIZE:
            continue
        row = np.frombuffer(value, dtype="<f8")
        dataset_id = int.from_bytes(key[:2], "big")
        if np.isfinite(row).all() and dataset_id in names:
            by_dataset.setdefault(dataset_id, []).append((int.from_bytes(key[2:], "big"), row))
    for dataset_id, rows in by_dataset.items():
        indices = np.array([index for index, _ in rows], dtype=np.int64)
        target.put_exact_rows(names[dataset_id], indices, np.stack([row for _, row in rows]))
