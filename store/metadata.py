"""Dataset table, write counters and round entries of a fits store (its `meta` sub-database).

`MetadataMixin` gives `FitsStore` its metadata methods; they need the store's `_env()`,
`_require_writable()`, `path` and `_dataset_ids` cache.
"""

from __future__ import annotations

import json
import math
import time as _time
from collections.abc import Sequence
from typing import Any

import lmdb
import numpy as np

from store import schema
from store.environment import META_COUNTERS, META_DATASETS, META_VERSION, ROUND_PREFIX, Environment
from store.errors import StoreError


def load_json(raw: bytes | None, default: Any) -> Any:
    return default if raw is None else json.loads(raw)


def _finite_or_none(value: Any) -> Any:
    """JSON-safe copy of a summary: numpy scalars become Python numbers, NaN/Inf become None."""
    if isinstance(value, dict):
        return {str(k): _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite_or_none(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def empty_counters() -> dict[str, Any]:
    """Write counters. `refused_nonfinite`: candidates with a NaN/Inf anywhere; `refused_invalid_loss`:
    finite candidates whose loss is negative (a loss is a weighted squared error, never below 0)."""
    return {
        "offered": 0,
        "accepted": 0,
        "refused_nonfinite": 0,
        "refused_invalid_loss": 0,
        "batches": 0,
        "corrupt_replaced": 0,
        "by_round": {},
    }


def note_written(
    datasets: dict[str, dict[str, Any]],
    written_ids: np.ndarray,
    written_indices: np.ndarray,
    new_ids: np.ndarray,
) -> None:
    """Update the dataset table for written records: (n,) ids and indices, (m,) ids of new keys.

    Counts grow by the new keys; a size grows to cover the highest index written.
    """
    by_id = {entry["id"]: entry for entry in datasets.values()}
    ids, added = np.unique(new_ids, return_counts=True)
    for dataset_id, count in zip(ids.tolist(), added.tolist(), strict=True):
        by_id[dataset_id]["count"] += count
    for dataset_id in np.unique(written_ids).tolist():
        top = int(written_indices[written_ids == dataset_id].max())
        by_id[dataset_id]["size"] = max(by_id[dataset_id]["size"], top + 1)


def is_declared(entry: dict[str, Any]) -> bool:
    """Whether a dataset's size was declared (fixed); stores from before the flag: when it is set."""
    return bool(entry.get("declared", entry["size"] > 0))


def size_mismatch(path: Any, name: str, entry: dict[str, Any], size: int) -> str | None:
    """The sentence refusing `size` for a known dataset, or None when the size agrees with it."""
    if (size == entry["size"]) or (not is_declared(entry) and size >= entry["size"]):
        return None
    return (
        f"dataset {name!r} in fits store {path} has {entry['size']} samples, not {size}; a different "
        f"dataset needs another name (--dataset), or resize this one on purpose with "
        f"`spin fits resize --store {path} --dataset {name} --size {size}`"
    )


def check_indices(
    path: Any, datasets: dict[str, dict[str, Any]], names: Sequence[str], indices: np.ndarray
) -> None:
    """A StoreError naming the first key at or past its dataset's declared size."""
    for name in dict.fromkeys(names):
        entry = datasets.get(name)
        if entry is None or not is_declared(entry):
            continue
        mine = np.fromiter((n == name for n in names), dtype=bool, count=len(names))
        past = np.flatnonzero(mine & (indices >= entry["size"]))
        if past.size:
            key = schema.format_key(name, int(indices[past[0]]))
            raise StoreError(
                f"fit key {key} lies past the declared size {entry['size']} of dataset {name!r} in fits "
                f"store {path}; nothing of this batch was written; check the keys, or resize the dataset "
                f"with `spin fits resize --store {path} --dataset {name} --size N`"
            )


def top_index(txn: lmdb.Transaction, handle: Environment, dataset_id: int) -> int:
    """The highest sample index stored for a dataset, -1 when it has no fits."""
    cursor = txn.cursor(db=handle.fits_db)
    following = schema.dataset_prefix(dataset_id + 1) if dataset_id + 1 < schema.MAX_DATASETS else None
    found = cursor.set_range(following) if following else False
    found = cursor.prev() if found else cursor.last()
    if not found or cursor.key()[:2] != schema.dataset_prefix(dataset_id):
        return -1
    return int.from_bytes(cursor.key()[2:], "big")


def put_datasets(
    txn: lmdb.Transaction, handle: Environment, datasets: dict[str, dict[str, Any]], stored: bytes | None
) -> None:
    """Write the dataset table in `txn` when it differs from the `stored` bytes."""
    table = json.dumps(datasets).encode()
    if table != stored:
        txn.put(META_DATASETS, table, db=handle.meta_db)


class MetadataMixin:
    """The metadata half of `FitsStore` (see the module docstring)."""

    def _datasets_in(self, txn: lmdb.Transaction) -> dict[str, dict[str, Any]]:
        return load_json(txn.get(META_DATASETS, db=self._handle.meta_db), {})

    def _ids_for(self, names: Sequence[str], txn: lmdb.Transaction) -> np.ndarray:
        """(B,) dataset names → (B,) ids; -1 for names the store has never seen."""
        try:
            return np.array([self._dataset_ids[name] for name in names], dtype=np.int64)
        except KeyError:  # a dataset this process has not looked up yet: refresh the table
            self._dataset_ids = ids = {n: d["id"] for n, d in self._datasets_in(txn).items()}
            return np.array([ids.get(name, -1) for name in names], dtype=np.int64)

    def datasets(self) -> dict[str, dict[str, Any]]:
        """name → {id, size (rows a full export has), count (records stored), dtype (of imports)}."""
        handle = self._env()
        return handle.read(self._datasets_in)

    def counters(self) -> dict[str, Any]:
        """Write counters: offered, accepted, refused_nonfinite, batches, corrupt_replaced, by_round."""
        handle = self._env()
        return handle.read(
            lambda txn: {**empty_counters(), **load_json(txn.get(META_COUNTERS, db=handle.meta_db), {})}
        )

    def schema_version(self) -> int:
        handle = self._env()
        return int(handle.read(lambda txn: txn.get(META_VERSION, db=handle.meta_db)))

    def declare_dataset(self, name: str, size: int | None = None, dtype: str | None = None) -> None:
        """Register a dataset (and its number of samples, and the float dtype of its source files).

        A declared size is fixed: declaring the dataset again with another size is a StoreError
        naming both sizes (a different dataset needs another name; `resize_dataset` changes it on
        purpose), and `put_if_better` refuses indices at or past it. A dataset first seen through
        `put_if_better` has no declared size; declaring one that covers its fits fixes it.
        """
        self._require_writable()
        handle = self._env()
        if dtype is not None and dtype not in ("float32", "float64"):
            raise StoreError(f"dataset {name!r}: dtype {dtype!r} is not float32 or float64")
        if size is not None and not 0 <= int(size) <= schema.MAX_INDEX + 1:
            raise StoreError(f"dataset {name!r}: size {size} is not in 0..{schema.MAX_INDEX + 1}")

        def body(txn: lmdb.Transaction) -> None:
            datasets = self._datasets_in(txn)
            known = name in datasets
            entry = self._dataset_entry(datasets, name)
            if size is not None:
                if known:
                    problem = size_mismatch(self.path, name, entry, int(size))
                    if problem:
                        raise StoreError(problem)
                entry["size"], entry["declared"] = int(size), True
            if dtype is not None:
                entry["dtype"] = dtype
            txn.put(META_DATASETS, json.dumps(datasets).encode(), db=handle.meta_db)

        handle.write(body)
        self._dataset_ids = {}

    def resize_dataset(self, name: str, size: int) -> int:
        """Change a dataset's declared size on purpose; returns the old size.

        Refuses (StoreError) a size that would leave a stored fit past the end.
        """
        self._require_writable()
        handle = self._env()
        size = int(size)
        if not 0 <= size <= schema.MAX_INDEX + 1:
            raise StoreError(f"dataset {name!r}: size {size} is not in 0..{schema.MAX_INDEX + 1}")
        dataset_id = self.dataset_id(name)

        def body(txn: lmdb.Transaction) -> int:
            datasets = self._datasets_in(txn)
            top = top_index(txn, handle, dataset_id)
            if size <= top:
                raise StoreError(
                    f"dataset {name!r} in fits store {self.path} holds a fit at index {top}, so its size "
                    f"cannot go below {top + 1}; choose --size {top + 1} or more"
                )
            old = datasets[name]["size"]
            datasets[name]["size"], datasets[name]["declared"] = size, True
            txn.put(META_DATASETS, json.dumps(datasets).encode(), db=handle.meta_db)
            return old

        old = handle.write(body)
        self._dataset_ids = {}
        return old

    def _dataset_entry(self, datasets: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in datasets:
            if not name or "\n" in name:
                raise StoreError(
                    f"dataset name {name!r} is empty or has a line break; use a plain name like 'h36m'"
                )
            if len(datasets) >= schema.MAX_DATASETS:
                raise StoreError(f"fits store {self.path} already holds {schema.MAX_DATASETS} datasets")
            datasets[name] = {
                "id": len(datasets),
                "size": 0,
                "count": 0,
                "dtype": "float32",
                "declared": False,
            }
        return datasets[name]

    def record_round(self, round: int, summary: dict[str, Any], time: float | None = None) -> None:
        """Keep a finished round's summary (numbers) and time (default now) in the metadata.

        Recording a round number again replaces its entry; NaN/Inf in the summary become null.
        """
        self._require_writable()
        handle = self._env()
        when = _time.time() if time is None else float(time)
        entry = {"round": int(round), "time": when, "summary": _finite_or_none(dict(summary))}
        payload = json.dumps(entry).encode()
        handle.write(lambda txn: txn.put(ROUND_PREFIX + b"%010d" % int(round), payload, db=handle.meta_db))

    def rounds(self) -> list[dict[str, Any]]:
        """Every recorded round, in order: [{round, time, summary}]."""
        handle = self._env()

        def body(txn: lmdb.Transaction) -> list[dict[str, Any]]:
            cursor = txn.cursor(db=handle.meta_db)
            found = []
            if cursor.set_range(ROUND_PREFIX):
                for key, value in cursor:
                    if not key.startswith(ROUND_PREFIX):
                        break
                    found.append(json.loads(value))
            return found

        return handle.read(body)

    def stats(self) -> dict[str, Any]:
        """Cheap summary from the metadata: records, datasets, counters, schema version, disk use."""
        handle = self._env()

        def body(txn: lmdb.Transaction) -> dict[str, Any]:
            return {
                "records": txn.stat(handle.fits_db)["entries"],
                "datasets": self._datasets_in(txn),
                "counters": load_json(txn.get(META_COUNTERS, db=handle.meta_db), empty_counters()),
                "schema_version": int(txn.get(META_VERSION, db=handle.meta_db)),
            }

        summary = handle.read(body)
        data_file = self.path / "data.mdb"
        summary["path"] = str(self.path)
        summary["file_bytes"] = data_file.stat().st_size if data_file.exists() else 0
        return summary

    def __len__(self) -> int:
        handle = self._env()
        return handle.read(lambda txn: txn.stat(handle.fits_db)["entries"])

    def _count(
        self,
        txn: lmdb.Transaction,
        handle: Environment,
        rounds: np.ndarray,
        finite: np.ndarray,
        negative: np.ndarray,
        winners: np.ndarray,
        corrupt: int,
    ) -> None:
        """Add one batch to the counters: (B,) rounds, finite and negative-loss masks, winner positions."""
        counters = {**empty_counters(), **load_json(txn.get(META_COUNTERS, db=handle.meta_db), {})}
        counters["offered"] += len(rounds)
        counters["accepted"] += len(winners)
        counters["refused_nonfinite"] += int((~finite).sum())
        counters["refused_invalid_loss"] += int(negative.sum())
        counters["corrupt_replaced"] += corrupt
        counters["batches"] += 1
        accepted_rounds = rounds[winners]
        for value in np.unique(rounds).tolist():
            entry = counters["by_round"].setdefault(
                str(value), {"offered": 0, "accepted": 0, "refused_nonfinite": 0}
            )
            entry.setdefault("refused_invalid_loss", 0)
            mask = rounds == value
            entry["offered"] += int(mask.sum())
            entry["accepted"] += int((accepted_rounds == value).sum())
            entry["refused_nonfinite"] += int((mask & ~finite).sum())
            entry["refused_invalid_loss"] += int((mask & negative).sum())
        txn.put(META_COUNTERS, json.dumps(counters).encode(), db=handle.meta_db)
