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

import errno
import json
import math
import os
import threading
import time as _time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import numpy as np

from store import schema
from store.errors import SchemaVersionError, StoreError

_T = TypeVar("_T")

FITS_DB = b"fits"
META_DB = b"meta"
EXACT_DB = b"exact64"
META_VERSION = b"schema_version"
META_DATASETS = b"datasets"
META_COUNTERS = b"counters"
META_CREATED = b"created"
ROUND_PREFIX = b"round/"

DEFAULT_MAP_SIZE = 256 << 20
MAX_READERS = 1024
EXACT_ROW_SIZE = (schema.NUM_POSE + schema.NUM_BETAS) * 8
_MAX_RETRIES = 40


def migrate_command(path: Path | str) -> str:
    return f"spin fits migrate --store {path}"


class _Environment:
    """The one open LMDB environment of a directory in this process, shared by its FitsStores."""

    def __init__(self, path: str, writable: bool, map_size: int, sync: bool = True) -> None:
        self.path = path
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.users = 0
        self.writable = False
        self.env: lmdb.Environment | None = None
        self.fits_db: Any = None
        self.meta_db: Any = None
        self.exact_db: Any = None
        self.open(writable, map_size, sync)

    def open(self, writable: bool, map_size: int, sync: bool = True) -> None:
        if writable:
            try:
                Path(self.path).mkdir(parents=True, exist_ok=True)
                env = lmdb.open(
                    self.path,
                    map_size=map_size,
                    max_dbs=4,
                    max_readers=MAX_READERS,
                    max_spare_txns=0,
                    sync=sync,
                    metasync=sync,
                    lock=True,
                    meminit=False,
                )
            except (OSError, lmdb.Error) as error:
                raise StoreError(
                    f"cannot open fits store {self.path} for writing ({error}); check the --store path "
                    "and its permissions"
                ) from None
            try:
                env.reader_check()  # free the slots of reader processes that died
                with env.begin(write=True) as txn:
                    foreign = set(txn.cursor().iternext(keys=True, values=False)) - {
                        FITS_DB,
                        META_DB,
                        EXACT_DB,
                    }
                    if foreign:
                        raise StoreError(
                            f"{self.path} is an LMDB environment holding other data, not a fits store; "
                            "choose a new or empty --store directory"
                        )
                    self._open_databases(env, txn, create=True)
                    _check_version(
                        txn.get(META_VERSION, db=self.meta_db),
                        self.path,
                        create_txn=txn,
                        meta_db=self.meta_db,
                    )
            except BaseException:
                env.close()
                raise
        else:
            if not (Path(self.path) / "data.mdb").is_file():
                raise StoreError(
                    f"no fits store at {self.path}; create one with `spin fits import` or `spin fits init`, "
                    "or check the --store path"
                )
            env = _open_readonly(self.path)
            try:
                # py-lmdb keeps a database handle opened in a read transaction only when it opens
                # the handle itself.
                self._open_databases(env, None, create=False)
                with env.begin() as txn:
                    _check_version(txn.get(META_VERSION, db=self.meta_db), self.path)
            except BaseException:
                env.close()
                raise
        self.env, self.writable = env, writable

    def _open_databases(self, env: lmdb.Environment, txn: lmdb.Transaction | None, create: bool) -> None:
        try:
            self.fits_db = env.open_db(FITS_DB, txn=txn, create=create)
            self.meta_db = env.open_db(META_DB, txn=txn, create=create)
            self.exact_db = env.open_db(EXACT_DB, txn=txn, create=create)
        except lmdb.NotFoundError:
            raise StoreError(
                f"{self.path} is an LMDB environment but not a fits store (no '{FITS_DB.decode()}' table); "
                "point --store at a store written by `spin fits`"
            ) from None

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    def grow(self, needed: int = 0) -> None:
        """Double the map (or more, to fit `needed` bytes); only with no transaction open here."""
        assert self.env is not None
        current = self.env.info()["map_size"]
        self.env.set_mapsize(max(2 * current, 2 * needed))

    def write(self, body: Callable[[lmdb.Transaction], _T], estimate_bytes: int = 0) -> _T:
        """Run `body` in one write transaction, growing the map and retrying when it is full."""
        with self.lock:
            assert self.env is not None and self.writable
            self._pre_grow(estimate_bytes)
            for _ in range(_MAX_RETRIES):
                try:
                    with self.env.begin(write=True) as txn:
                        return body(txn)
                except lmdb.MapFullError:
                    self.grow()
                except lmdb.MapResizedError:  # another process grew the map past ours
                    self.env.set_mapsize(0)
            raise StoreError(f"could not grow the map of fits store {self.path}; check free disk space there")

    def read(self, body: Callable[[lmdb.Transaction], _T]) -> _T:
        with self.lock:
            assert self.env is not None
            for _ in range(_MAX_RETRIES):
                try:
                    with self.env.begin() as txn:
                        return body(txn)
                except lmdb.MapResizedError:  # the writer grew the file past our mapping
                    self.env.set_mapsize(0)
                except lmdb.ReadersFullError:  # slots of processes that died without closing
                    if not self.env.reader_check():
                        raise StoreError(
                            f"all {MAX_READERS} reader slots of fits store {self.path} are in use; "
                            "use fewer reading processes"
                        ) from None
            raise StoreError(f"could not follow the map growth of fits store {self.path}; reopen it")

    def _pre_grow(self, estimate_bytes: int) -> None:
        if estimate_bytes <= 0:
            return
        assert self.env is not None
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        if used + estimate_bytes > 0.8 * info["map_size"]:
            self.grow(used + estimate_bytes)


def _open_readonly(path: str) -> lmdb.Environment:
    options = dict(map_size=0, max_dbs=4, max_readers=MAX_READERS, max_spare_txns=0, readonly=True)
    try:
        return lmdb.open(path, lock=True, **options)
    except lmdb.Error as error:
        # A published snapshot on a read-only medium cannot take reader slots; without a lock
        # it is safe only because nothing writes it.
        if (
            getattr(error, "code", None) in (errno.EACCES, errno.EROFS)
            or "ermission" in str(error)
            or ("Read-only" in str(error))
        ):
            return lmdb.open(path, lock=False, **options)
        raise StoreError(f"cannot open fits store {path}: {error}; check the --store path") from None


def _check_version(raw: bytes | None, path: str, create_txn: Any = None, meta_db: Any = None) -> None:
    if raw is None:
        if create_txn is not None and create_txn.stat(meta_db)["entries"] == 0:
            create_txn.put(META_VERSION, str(schema.SCHEMA_VERSION).encode(), db=meta_db)
            create_txn.put(META_CREATED, json.dumps(_time.time()).encode(), db=meta_db)
            return
        raise StoreError(f"{path} has no schema version in its metadata; it was not written by `spin fits`")
    version = int(raw)
    if version < schema.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"fits store {path} has schema version {version} and this program reads version "
            f"{schema.SCHEMA_VERSION}; upgrade it with `{migrate_command(path)}`"
        )
    if version > schema.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"fits store {path} has schema version {version}, newer than this program's "
            f"{schema.SCHEMA_VERSION}; upgrade the spin-loop package to read it"
        )


_OPEN: dict[str, _Environment] = {}
_OPEN_LOCK = threading.RLock()  # re-entrant: a FitsStore may be finalised (and released) inside _acquire


def _hold_all_for_fork() -> None:
    """Before a fork: wait until no thread of this process has a transaction open.

    A child closes the environment it inherits before opening its own, and closing aborts every
    transaction object of that environment, which would free the parent's reader slots. With
    these locks held no transaction exists at the fork (and spare transactions are disabled).
    """
    _OPEN_LOCK.acquire()
    for handle in list(_OPEN.values()):
        handle.lock.acquire()


def _release_all_after_fork() -> None:
    for handle in list(_OPEN.values()):
        handle.lock.release()
    _OPEN_LOCK.release()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_hold_all_for_fork,
        after_in_parent=_release_all_after_fork,
        after_in_child=_release_all_after_fork,
    )


def _acquire(path: str, writable: bool, map_size: int, sync: bool) -> _Environment:
    with _OPEN_LOCK:
        handle = _OPEN.get(path)
        if handle is not None and handle.pid != os.getpid():
            # Inherited through fork: its memory map and reader slots belong to the parent.
            # Closing our copy releases only this process's file descriptors.
            try:
                if handle.env is not None:
                    handle.env.close()
            except lmdb.Error:
                pass
            handle = None
        if handle is None:
            handle = _Environment(path, writable, map_size, sync)
            _OPEN[path] = handle
        elif writable and not handle.writable:
            with handle.lock:
                handle.close()
                handle.open(True, map_size, sync)
        handle.users += 1
        return handle


def _release(handle: _Environment) -> None:
    with _OPEN_LOCK:
        if handle.pid != os.getpid():
            return
        handle.users -= 1
        if handle.users <= 0:
            with handle.lock:
                handle.close()
            if _OPEN.get(handle.path) is handle:
                del _OPEN[handle.path]


def batch_array(value: Any, shape: tuple[int, ...], name: str, dtype: Any) -> np.ndarray:
    """`value` as an array of `dtype` and exactly `shape`, or a StoreError naming the argument."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to ±inf is refused as non-finite
        array = np.asarray(value, dtype=dtype)
    if array.shape != shape:
        raise StoreError(f"`{name}` has shape {array.shape}; put_if_better needs {shape}")
    return array


def per_candidate(value: Any, count: int, name: str, dtype: Any) -> np.ndarray:
    """One value or (count,) values → (count,) array of `dtype`; a StoreError names the argument."""
    array = np.asarray(value)
    if array.ndim > 1 or (array.ndim == 1 and len(array) != count):
        raise StoreError(f"`{name}` has shape {array.shape}; give one number or ({count},)")
    return np.broadcast_to(array, (count,)).astype(dtype)


def _json(raw: bytes | None, default: Any) -> Any:
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


@dataclass(frozen=True)
class PutResult:
    """What `put_if_better` did with a batch of B candidates.

    accepted `(B,)` bool: the candidate was written; previous_loss `(B,)` float64: for accepted
    candidates the loss they replaced, NaN where the key had no (readable) fit before; NaN for
    candidates that were not written.
    """

    accepted: np.ndarray
    previous_loss: np.ndarray

    @property
    def improved(self) -> np.ndarray:
        """`(B,)` bool: accepted over an existing fit (a better fit, not a first one)."""
        return self.accepted & ~np.isnan(self.previous_loss)

    @property
    def new(self) -> np.ndarray:
        """`(B,)` bool: accepted for a key that had no fit."""
        return self.accepted & np.isnan(self.previous_loss)

    def __len__(self) -> int:
        return len(self.accepted)


def empty_counters() -> dict[str, Any]:
    return {
        "offered": 0,
        "accepted": 0,
        "refused_nonfinite": 0,
        "batches": 0,
        "corrupt_replaced": 0,
        "by_round": {},
    }


def _decode_values(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Stored values → (records (n,), ok (n,) bool: right length and checksum)."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    right_length = lengths == schema.RECORD_SIZE
    if right_length.all():
        records = schema.decode_records(b"".join(values), len(values))
    else:
        records = np.zeros(len(values), dtype=schema.RECORD_DTYPE)
        good = np.flatnonzero(right_length)
        if good.size:
            records[good] = schema.decode_records(b"".join(values[i] for i in good), good.size)
    ok = right_length & schema.checksum_ok(records) & (records["version"] == schema.SCHEMA_VERSION)
    return records, ok


class FitsStore:
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
        self._handle: _Environment | None = None
        self._dataset_ids: dict[str, int] = {}
        if readonly:
            # Validate now (missing store, wrong version) but keep nothing open: the first read
            # in each process opens its own handle.
            # `_acquire` also drops a handle inherited through fork (py-lmdb refuses a second
            # open of the same path in one process).
            _release(_acquire(str(self.path), False, 0, sync))
        else:
            self._env()

    # -- handles -------------------------------------------------------------------------------

    def _env(self) -> _Environment:
        handle = self._handle
        if handle is None or handle.pid != os.getpid() or handle.env is None:
            if handle is not None and handle.pid == os.getpid():
                _release(handle)
            handle = _acquire(str(self.path), not self.readonly, self.map_size, self.sync)
            self._handle = handle
            self._dataset_ids = {}
        return handle

    def close(self) -> None:
        """Release this object's share of the environment (closed when no FitsStore here uses it)."""
        if self._handle is not None:
            _release(self._handle)
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

    # -- metadata ------------------------------------------------------------------------------

    def _datasets_in(self, txn: lmdb.Transaction) -> dict[str, dict[str, Any]]:
        return _json(txn.get(META_DATASETS, db=self._handle.meta_db), {})

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
        return handle.read(lambda txn: _json(txn.get(META_COUNTERS, db=handle.meta_db), empty_counters()))

    def schema_version(self) -> int:
        handle = self._env()
        return int(handle.read(lambda txn: txn.get(META_VERSION, db=handle.meta_db)))

    def declare_dataset(self, name: str, size: int | None = None, dtype: str | None = None) -> None:
        """Register a dataset (and its number of samples, and the float dtype of its source files)."""
        self._require_writable()
        handle = self._env()
        if dtype is not None and dtype not in ("float32", "float64"):
            raise StoreError(f"dataset {name!r}: dtype {dtype!r} is not float32 or float64")

        def body(txn: lmdb.Transaction) -> None:
            datasets = self._datasets_in(txn)
            entry = self._dataset_entry(datasets, name)
            if size is not None:
                entry["size"] = max(entry["size"], int(size))
            if dtype is not None:
                entry["dtype"] = dtype
            txn.put(META_DATASETS, json.dumps(datasets).encode(), db=handle.meta_db)

        handle.write(body)
        self._dataset_ids = {}

    def _dataset_entry(self, datasets: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        if name not in datasets:
            if not name or "\n" in name:
                raise StoreError(
                    f"dataset name {name!r} is empty or has a line break; use a plain name like 'h36m'"
                )
            if len(datasets) >= schema.MAX_DATASETS:
                raise StoreError(f"fits store {self.path} already holds {schema.MAX_DATASETS} datasets")
            datasets[name] = {"id": len(datasets), "size": 0, "count": 0, "dtype": "float32"}
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
                "counters": _json(txn.get(META_COUNTERS, db=handle.meta_db), empty_counters()),
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

    # -- writes --------------------------------------------------------------------------------

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
        stored float32/float64) are refused and counted. When a key appears more than once in the
        batch only its lowest-loss candidate (the first, on a tie) can be accepted. `time`
        defaults to now; interchange passes the original write time when restoring a store.
        """
        self._require_writable()
        handle = self._env()
        keys = list(keys)
        count = len(keys)
        pose = batch_array(pose, (count, schema.NUM_POSE), "pose", np.float32)
        betas = batch_array(betas, (count, schema.NUM_BETAS), "betas", np.float32)
        cam_t = batch_array(cam_t, (count, schema.NUM_CAM), "cam_t", np.float32)
        loss = batch_array(loss, (count,), "loss", np.float64)
        rounds = per_candidate(round, count, "round", np.int64)
        steps = per_candidate(step, count, "step", np.int64)
        if count and (rounds.min() < 0 or rounds.max() > np.iinfo(np.uint32).max):
            raise StoreError(f"`round` must lie in 0..{np.iinfo(np.uint32).max}")
        codes = schema.source_codes(source, count)
        times = per_candidate(_time.time() if time is None else time, count, "time", np.float64)
        names, indices = schema.parse_keys(keys)
        with np.errstate(invalid="ignore", over="ignore"):
            finite = (
                np.isfinite(pose).all(axis=1)
                & np.isfinite(betas).all(axis=1)
                & np.isfinite(cam_t).all(axis=1)
                & np.isfinite(loss)
            )
        candidates = np.flatnonzero(finite)

        def body(txn: lmdb.Transaction) -> tuple[np.ndarray, np.ndarray]:
            stored_table = txn.get(META_DATASETS, db=handle.meta_db)
            datasets = _json(stored_table, {})
            for name in dict.fromkeys(names[i] for i in candidates):
                self._dataset_entry(datasets, name)
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
                records, ok = _decode_values([v for _, v in found])
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

            new = winners[~present[better]]
            if new.size:
                new_ids, new_counts = np.unique(ids[new], return_counts=True)
                by_id = {entry["id"]: entry for entry in datasets.values()}
                for dataset_id, added in zip(new_ids.tolist(), new_counts.tolist(), strict=True):
                    by_id[dataset_id]["count"] += added
            if winners.size:
                by_id = {entry["id"]: entry for entry in datasets.values()}
                for dataset_id in np.unique(ids[winners]).tolist():
                    top = int(indices[winners][ids[winners] == dataset_id].max())
                    by_id[dataset_id]["size"] = max(by_id[dataset_id]["size"], top + 1)
            table = json.dumps(datasets).encode()
            if table != stored_table:
                txn.put(META_DATASETS, table, db=handle.meta_db)
            self._count(txn, handle, rounds, finite, winners, corrupt)
            return winners, stored[better]

        winners, replaced = handle.write(body, estimate_bytes=3 * count * (schema.RECORD_SIZE + 32))
        self._dataset_ids = {}
        accepted = np.zeros(count, dtype=bool)
        accepted[winners] = True
        previous = np.full(count, np.nan)
        previous[winners] = np.where(np.isinf(replaced), np.nan, replaced)
        return PutResult(accepted=accepted, previous_loss=previous)

    def _count(
        self,
        txn: lmdb.Transaction,
        handle: _Environment,
        rounds: np.ndarray,
        finite: np.ndarray,
        winners: np.ndarray,
        corrupt: int,
    ) -> None:
        counters = _json(txn.get(META_COUNTERS, db=handle.meta_db), empty_counters())
        counters["offered"] += len(rounds)
        counters["accepted"] += len(winners)
        counters["refused_nonfinite"] += int((~finite).sum())
        counters["corrupt_replaced"] += corrupt
        counters["batches"] += 1
        accepted_rounds = rounds[winners]
        for value in np.unique(rounds).tolist():
            entry = counters["by_round"].setdefault(
                str(value), {"offered": 0, "accepted": 0, "refused_nonfinite": 0}
            )
            mask = rounds == value
            entry["offered"] += int(mask.sum())
            entry["accepted"] += int((accepted_rounds == value).sum())
            entry["refused_nonfinite"] += int((mask & ~finite).sum())
        txn.put(META_COUNTERS, json.dumps(counters).encode(), db=handle.meta_db)

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
            table = schema.decode_records(b"".join(values) + _ABSENT_BYTES, len(found) + 1)
            ok = schema.checksum_ok(table[:-1]) & (table["version"][:-1] == schema.SCHEMA_VERSION)
        else:
            ok = _decode_values(values)[1]
        if not ok.all():
            bad = int(unique_ints[np.flatnonzero(row_of_unique == np.flatnonzero(~ok)[0])[0]])
            raise self._corrupt(self._key_name(bad))
        rows = np.full(count, len(found))
        rows[known] = row_of_unique[inverse]
        result = _fields(table[rows])
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
            records, ok = _decode_values([v for _, v in items])
            if not ok.all():
                bad = int(keys["index"][np.flatnonzero(~ok)[0]])
                raise self._corrupt(schema.format_key(name, bad))
            chunk = _fields(records)
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
        """Write a consistent copy to the new or empty directory `dest` while writers go on.

        The default is LMDB's compacting copy (free pages dropped). `repack=True` rewrites every
        table in key order instead, so leaf pages come out full: a store whose keys first arrived
        in random order (about 600-750 bytes per fit) shrinks to about 410 bytes per fit.
        """
        dest = Path(dest).expanduser().resolve()
        if dest == self.path:
            raise StoreError(f"snapshot destination {dest} is the store itself; choose another directory")
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise StoreError(
                f"snapshot destination {dest} exists and is not an empty directory; choose a new path"
            )
        dest.mkdir(parents=True, exist_ok=True)
        handle = self._env()
        with handle.lock:
            assert handle.env is not None
            if repack:
                _repack(handle, dest)
            else:
                handle.env.copy(str(dest), compact=True)
        return dest

    # -- package-internal access for verify / migrate -----------------------------------------

    def _read(self, body: Callable[[lmdb.Transaction, _Environment], _T]) -> _T:
        handle = self._env()
        return handle.read(lambda txn: body(txn, handle))

    def _write(self, body: Callable[[lmdb.Transaction, _Environment], _T]) -> _T:
        self._require_writable()
        handle = self._env()
        result = handle.write(lambda txn: body(txn, handle))
        self._dataset_ids = {}
        return result


def _repack(handle: _Environment, dest: Path, chunk: int = 16384) -> None:
    """Copy every table of `handle` into a new environment at `dest`, appending in key order."""
    assert handle.env is not None
    used = (handle.env.info()["last_pgno"] + 1) * 4096
    target = lmdb.open(
        str(dest),
        map_size=max(DEFAULT_MAP_SIZE, 2 * used),
        max_dbs=4,
        sync=False,
        metasync=False,
        meminit=False,
    )
    try:
        with handle.env.begin() as source:  # one read view: the copy is consistent
            for name, db in (
                (FITS_DB, handle.fits_db),
                (META_DB, handle.meta_db),
                (EXACT_DB, handle.exact_db),
            ):
                target_db = target.open_db(name)
                cursor = source.cursor(db=db)
                pending: list[tuple[bytes, bytes]] = []
                for item in cursor:
                    pending.append(item)
                    if len(pending) >= chunk:
                        _append(target, target_db, pending)
                        pending = []
                _append(target, target_db, pending)
        target.sync(True)
    finally:
        target.close()


def _append(env: lmdb.Environment, db: Any, items: list[tuple[bytes, bytes]]) -> None:
    for _ in range(_MAX_RETRIES):
        try:
            with env.begin(write=True, db=db) as txn:
                txn.cursor().putmulti(items, append=True)
            return
        except lmdb.MapFullError:
            env.set_mapsize(2 * env.info()["map_size"])
    raise StoreError(f"could not grow the snapshot map at {env.path()}; check free disk space there")


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


_ABSENT = np.zeros(1, dtype=schema.RECORD_DTYPE)
_ABSENT["source"] = len(schema.SOURCES)  # reads back as source ''
_ABSENT_BYTES = _ABSENT.tobytes()


def _fields(records: np.ndarray) -> dict[str, np.ndarray]:
    """(B,) structured records → dict of plain arrays (copies, so they outlive the read buffer)."""
    return {
        "pose": records["pose"].astype(np.float32),
        "betas": records["betas"].astype(np.float32),
        "cam_t": records["cam_t"].astype(np.float32),
        "loss": records["loss"].astype(np.float64),
        "round": records["round"].astype(np.int64),
        "step": records["step"].astype(np.int64),
        "time": records["time"].astype(np.float64),
        "source": schema.source_names(records["source"]),
    }
