"""`FitsStore`: the best SMPL fit found so far for every training sample, in one LMDB environment.

Layout of the environment (a directory with `data.mdb` and `lock.mdb`):

- sub-database `fits`: 6-byte key (dataset id, sample index) → 376-byte record (`store.schema`);
- sub-database `meta`: JSON values — schema version, the dataset table (name → id, size, count,
  dtype), write counters (global and per round), one entry per finished round;
- sub-database `exact64`: float64 rows of imported static fits that float32 cannot hold exactly,
  so that SPIN's `.npy` files export bit-exactly (`store.interchange`).

Concurrency. LMDB serialises write transactions across processes, and `put_if_better` reads and
writes inside one of them, so best-so-far holds even with several writer processes; in production
one process writes (the store actor). Any process may read: each process opens its own handle
lazily on first use and again after a fork (an environment never crosses a fork), read
transactions last one call, and the lock file has 1024 reader slots. py-lmdb refuses to open one
environment twice in a process, so `FitsStore` objects on the same directory share one handle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from store import schema
from store.candidates import (
    Candidates,
    PutResult,
    batch_array,
    per_candidate,
    stamp_times,
    validate_candidates,
)
from store.environment import (
    DEFAULT_MAP_SIZE,
    EXACT_ROW_SIZE,
    META_DATASETS,
    Environment,
    acquire,
    migrate_command,
    release,
)
from store.errors import StoreError
from store.metadata import MetadataMixin, check_indices, load_json, note_written, put_datasets
from store.snapshot import snapshot

__all__ = [
    "FitsStore", "PutResult", "StoreError", "batch_array", "per_candidate", "migrate_command",
    "DEFAULT_MAP_SIZE",
]

_T = TypeVar("_T")


class FitsStore(MetadataMixin):
    """The fits dictionary: one record per key `<dataset>/<index>`, written only when better.

    `FitsStore(path)` opens (creating if needed) a store for writing; `readonly=True` opens an
    existing one for reading. Instances pickle as their path, so they can be handed to data-loader
    workers and Ray tasks, which open their own handle on first use.

    `sync=True` (default) makes every committed batch durable: two fsyncs per commit. A process
    crash never loses a committed batch either way (the data is in the OS's page cache);
    `sync=False` only trades away survival of an operating-system crash or power loss, where
    LMDB may then lose recent batches or, on file systems that reorder writes, the store. Use it
    for scratch stores and benchmarks. The first opener in a process decides for the process.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        readonly: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
        sync: bool = True,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.readonly = readonly
        self.map_size = int(map_size)
        self.sync = sync
        self._handle: Environment | None = None
        self._dataset_ids: dict[str, int] = {}
        if readonly:
            # Validate now (missing store, wrong version) but keep nothing open: the first read
            # in each process opens its own handle.
            # `_acquire` also drops a handle inherited through fork (py-lmdb refuses a second
            # open of the same path in one process).
            release(acquire(str(self.path), False, 0, sync))
        else:
            self._env()

    # -- handles -------------------------------------------------------------------------------

    def _env(self) -> Environment:
        handle = self._handle
        if handle is None or handle.pid != os.getpid() or handle.env is None:
            if handle is not None and handle.pid == os.getpid():
                release(handle)
            handle = acquire(str(self.path), not self.readonly, self.map_size, self.sync)
            self._handle = handle
            self._dataset_ids = {}
        return handle

    def close(self) -> None:
        """Release this object's share of the environment (closed when no FitsStore here uses it)."""
        if self._handle is not None:
            release(self._handle)
            self._handle = None

    def __enter__(self) -> FitsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "readonly": self.readonly, "map_size": self.map_size, "sync": self.sync}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.readonly, self.map_size = state["path"], state["readonly"], state["map_size"]
        self.sync = state.get("sync", True)
        self._handle, self._dataset_ids = None, {}

    def __repr__(self) -> str:
        return f"FitsStore({str(self.path)!r}, readonly={self.readonly})"

    def _require_writable(self) -> None:
        if self.readonly:
            raise StoreError(
                f"fits store {self.path} was opened read-only; open it with readonly=False to write"
            )

    def put_if_better(
        self,
        keys: Sequence[str],
        pose: np.ndarray,
        betas: np.ndarray,
        cam_t: np.ndarray,
        loss: np.ndarray,
        round: int | np.ndarray = 0,
        step: int | np.ndarray = 0,
        source: str | Sequence[str] = "smplify",
        time: float | np.ndarray | None = None,
    ) -> PutResult:
        """Write each candidate whose key is absent or whose loss is strictly lower.

        Returns a `PutResult`: per candidate whether it was written and the loss it replaced.

        keys B strings `<dataset>/<index>`; pose (B, 72), betas (B, 10), cam_t (B, 3), loss (B,).
        One write transaction for the batch. Candidates with any NaN/Inf (after the cast to the
        stored float32/float64) are refused and counted (`refused_nonfinite`), and so are those with
        a negative loss (`refused_invalid_loss`): a stored loss is always finite and >= 0.
        When a key appears more than once in the batch only its lowest-loss candidate (the first,
        on a tie) can be accepted. `time`
        defaults to now; interchange passes the original write time when restoring a store.
        """
        return self.put_candidates(
            validate_candidates(keys, pose, betas, cam_t, loss, round, step, source, time)
        )

    def put_candidates(self, candidates: Candidates) -> PutResult:
        """`put_if_better` for a batch already validated by `validate_candidates`."""
        self._require_writable()
        handle = self._env()
        count = len(candidates)
        pose, betas, cam_t, loss = candidates.pose, candidates.betas, candidates.cam_t, candidates.loss
        rounds, steps, codes = candidates.round, candidates.step, candidates.source
        times = stamp_times(candidates)
        names, indices = candidates.names, candidates.indices
        finite = candidates.finite()
        negative = finite & candidates.negative_loss()
        candidates = np.flatnonzero(finite & ~negative)

        def body(txn: lmdb.Transaction) -> tuple[np.ndarray, np.ndarray]:
            stored_table = txn.get(META_DATASETS, db=handle.meta_db)
            datasets = load_json(stored_table, {})
            for name in dict.fromkeys(names[i] for i in candidates):
                self._dataset_entry(datasets, name)
            check_indices(self.path, datasets, names, indices)
            # Datasets of refused candidates only are not registered; their ids are never used.
            ids = np.fromiter(
                (datasets[name]["id"] if name in datasets else -1 for name in names),
                dtype=np.int64,
                count=count,
            )
            ints = schema.key_ints(ids[candidates], indices[candidates])
            # Sort by key, then loss, then position: the first of each key group is its best.
            order = np.lexsort((candidates, loss[candidates], ints))
            sorted_ints = ints[order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = sorted_ints[1:] != sorted_ints[:-1]
            best = candidates[order[first]]
            best_ints = sorted_ints[first]
            key_bytes = schema.encode_key_ints(best_ints)

            cursor = txn.cursor(db=handle.fits_db)
            stored = np.full(len(best), np.inf)
            present = np.zeros(len(best), dtype=bool)
            corrupt = 0
            found = cursor.getmulti(key_bytes) if key_bytes else []
            if found:
                at = np.searchsorted(
                    best_ints, schema.decode_key_ints(b"".join(k for k, _ in found), len(found))
                )
                records, ok = schema.decode_values([v for _, v in found])
                present[at] = True
                # A corrupted stored record counts as absent, so a valid candidate heals it.
                stored[at[ok]] = records["loss"][ok]
                corrupt = int((~ok).sum())
            better = loss[best] < stored
            winners = best[better]
            payload = memoryview(
                schema.encode_records(
                    pose[winners],
                    betas[winners],
                    cam_t[winners],
                    loss[winners],
                    times[winners],
                    steps[winners],
                    rounds[winners],
                    codes[winners],
                )
            )
            size = schema.RECORD_SIZE
            items = [
                (key_bytes[j], payload[i * size : (i + 1) * size])
                for i, j in enumerate(np.flatnonzero(better))
            ]
            _put_sorted(cursor, items)

            note_written(datasets, ids[winners], indices[winners], ids[winners[~present[better]]])
            put_datasets(txn, handle, datasets, stored_table)
            self._count(txn, handle, rounds, finite, negative, winners, corrupt)
            return winners, stored[better]

        winners, replaced = handle.write(body, estimate_bytes=3 * count * (schema.RECORD_SIZE + 32))
        self._dataset_ids = {}
        accepted = np.zeros(count, dtype=bool)
        accepted[winners] = True
        previous = np.full(count, np.nan)
        previous[winners] = np.where(np.isinf(replaced), np.nan, replaced)
        return PutResult(accepted=accepted, previous_loss=previous)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Read a batch of keys in one read transaction.

        Returns `pose` (B, 72), `betas` (B, 10), `cam_t` (B, 3) float32, `loss` (B,) float64,
        `round`, `step` (B,) int64, `time` (B,) float64, `source` (B,) str and `present` (B,) bool.
        Absent keys read as zeros, loss +inf and source ''.
        """
        handle = self._env()
        keys = list(keys)
        count = len(keys)
        names, indices = schema.parse_keys(keys)

        def body(
            txn: lmdb.Transaction,
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[bytes, bytes]]]:
            ids = self._ids_for(names, txn)
            known = np.flatnonzero(ids >= 0)
            unique_ints, inverse = np.unique(schema.key_ints(ids[known], indices[known]), return_inverse=True)
            found = (
                txn.cursor(db=handle.fits_db).getmulti(schema.encode_key_ints(unique_ints)) if count else []
            )
            return known, inverse, unique_ints, found

        known, inverse, unique_ints, found = handle.read(body)
        # getmulti answers in the (sorted) order asked, leaving out absent keys; row len(found) of
        # `table` is the absent record, so one gather builds the whole batch.
        if len(found) == len(unique_ints):
            row_of_unique = np.arange(len(found))
        else:
            found_ints = schema.decode_key_ints(b"".join([k for k, _ in found]), len(found))
            row_of_unique = np.full(len(unique_ints), len(found))
            row_of_unique[np.searchsorted(unique_ints, found_ints)] = np.arange(len(found))
        values = [v for _, v in found]
        if set(map(len, values)) <= {schema.RECORD_SIZE}:
            table = schema.decode_records(b"".join(values) + schema.ABSENT_BYTES, len(found) + 1)
            ok = schema.checksum_ok(table[:-1]) & (table["version"][:-1] == schema.SCHEMA_VERSION)
        else:
            ok = schema.decode_values(values)[1]
        if not ok.all():
            bad = int(unique_ints[np.flatnonzero(row_of_unique == np.flatnonzero(~ok)[0])[0]])
            raise self._corrupt(self._key_name(bad))
        rows = np.full(count, len(found))
        rows[known] = row_of_unique[inverse]
        result = schema.record_fields(table[rows])
        present = rows < len(found)
        result["loss"][~present] = np.inf
        result["present"] = present
        return result

    def _corrupt(self, key: str) -> StoreError:
        return StoreError(
            f"the record of {key} in fits store {self.path} is corrupted; run "
            f"`spin fits verify --store {self.path} --repair` to drop it so it is fitted again"
        )

    def _key_name(self, key_int: int) -> str:
        dataset_id, index = key_int >> 32, key_int & 0xFFFFFFFF
        names = {entry["id"]: name for name, entry in self.datasets().items()}
        return schema.format_key(names.get(dataset_id, f"<dataset id {dataset_id}>"), index)

    def dataset_id(self, name: str) -> int:
        """The id of a dataset in this store; a StoreError naming the known datasets otherwise."""
        datasets = self.datasets()
        if name not in datasets:
            known = ", ".join(sorted(datasets)) or "none yet"
            raise StoreError(
                f"fits store {self.path} has no dataset {name!r} (it has: {known}); check --dataset"
            )
        return datasets[name]["id"]

    def iter_dataset(
        self, name: str, chunk_size: int = 65536, start: int = 0
    ) -> Iterator[dict[str, np.ndarray]]:
        """Stream one dataset in index order (from `start`): dicts like `get`'s plus `index` (n,).

        Each chunk is read in its own short transaction, so the stream never pins old pages; a
        chunk is consistent, the whole stream is not (use `snapshot` for a frozen copy).
        """
        handle = self._env()
        prefix = schema.dataset_prefix(self.dataset_id(name))
        while start <= schema.MAX_INDEX:
            start_key = prefix + int(start).to_bytes(4, "big")

            def body(txn: lmdb.Transaction, start_key: bytes = start_key) -> list[tuple[bytes, bytes]]:
                cursor = txn.cursor(db=handle.fits_db)
                items: list[tuple[bytes, bytes]] = []
                if cursor.set_range(start_key):
                    for key, value in cursor:
                        if key[:2] != prefix or len(items) >= chunk_size:
                            break
                        items.append((key, value))
                return items

            items = handle.read(body)
            if not items:
                return
            keys = np.frombuffer(b"".join(k for k, _ in items), dtype=schema.KEY_DTYPE)
            records, ok = schema.decode_values([v for _, v in items])
            if not ok.all():
                bad = int(keys["index"][np.flatnonzero(~ok)[0]])
                raise self._corrupt(schema.format_key(name, bad))
            chunk = schema.record_fields(records)
            chunk["index"] = keys["index"].astype(np.int64)
            yield chunk
            start = int(keys["index"][-1]) + 1
            if len(items) < chunk_size:
                return

    # -- exact float64 rows of imported static fits ---------------------------------------------

    def put_exact_rows(self, dataset: str, indices: np.ndarray, rows: np.ndarray) -> None:
        """Keep float64 rows (n, 82) = pose 72 + betas 10 that float32 records cannot hold exactly.

        Used by the `.npy` import so that export gives back the same bytes; a row is used on
        export only while the key's record still holds that row's float32 rounding.
        """
        self._require_writable()
        handle = self._env()
        rows = np.ascontiguousarray(rows, dtype="<f8").reshape(
            len(indices), schema.NUM_POSE + schema.NUM_BETAS
        )
        dataset_id = self.dataset_id(dataset)
        ints = schema.key_ints(np.full(len(indices), dataset_id), np.asarray(indices))
        order = np.argsort(ints, kind="stable")
        keys = schema.encode_key_ints(ints[order])
        payload = memoryview(rows[order].tobytes())
        items = [(k, payload[i * EXACT_ROW_SIZE : (i + 1) * EXACT_ROW_SIZE]) for i, k in enumerate(keys)]
        handle.write(
            lambda txn: txn.cursor(db=handle.exact_db).putmulti(items),
            estimate_bytes=3 * len(items) * (EXACT_ROW_SIZE + 32),
        )

    def exact_rows(self, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """All exact rows of a dataset: indices (n,) int64, rows (n, 82) float64."""
        handle = self._env()
        prefix = schema.dataset_prefix(self.dataset_id(dataset))

        def body(txn: lmdb.Transaction) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=handle.exact_db)
            items = []
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if key[:2] != prefix:
                        break
                    items.append((key, value))
            return items

        items = handle.read(body)
        indices = np.frombuffer(b"".join(k for k, _ in items), dtype=schema.KEY_DTYPE)["index"].astype(
            np.int64
        )
        rows = np.frombuffer(b"".join(v for _, v in items), dtype="<f8").reshape(len(items), -1)
        return indices, rows.astype(np.float64)

    # -- copies --------------------------------------------------------------------------------

    def snapshot(self, dest: str | os.PathLike, repack: bool = False) -> Path:
        """A consistent copy in the new or empty directory `dest`; see `store.snapshot.snapshot`."""
        return snapshot(self._env(), dest, repack=repack)

    # -- package-internal access for verify / migrate -----------------------------------------

    def _read(self, body: Callable[[lmdb.Transaction, Environment], _T]) -> _T:
        handle = self._env()
        return handle.read(lambda txn: body(txn, handle))

    def _write(self, body: Callable[[lmdb.Transaction, Environment], _T]) -> _T:
        self._require_writable()
        handle = self._env()
        result = handle.write(lambda txn: body(txn, handle))
        self._dataset_ids = {}
        return result


def _put_sorted(cursor: lmdb.Cursor, items: list[tuple[bytes, memoryview]]) -> None:
    """Write items sorted by key; those past the last stored key are appended.

    LMDB splits a full page in the middle unless it is told the write appends, so appending in
    key order is what keeps densely written datasets at ten records per page.
    """
    if not items:
        return
    last = cursor.key() if cursor.last() else b""
    split = len(items)
    while split > 0 and items[split - 1][0] > last:
        split -= 1
    if split:
        cursor.putmulti(items[:split])
    if split < len(items):
        consumed, added = cursor.putmulti(items[split:], append=True)
        if added != consumed:
            raise AssertionError("append of sorted fits keys was refused by LMDB")
