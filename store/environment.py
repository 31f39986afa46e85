"""The one open LMDB environment per store directory in this process, and fork handling.

py-lmdb refuses to open one environment twice in a process, so every `FitsStore` on a directory
shares one `Environment` from the registry here; a handle never crosses a fork (the child drops
the inherited one and opens its own). `Environment.read` / `.write` run one transaction each and
absorb LMDB's map growth (`MDB_MAP_FULL`, `MDB_MAP_RESIZED`) and dead reader slots.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time as _time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from store import schema
from store.damage import check_directory, damaged, disk_full, is_disk_error, translate
from store.errors import DamagedStoreError, SchemaVersionError, StoreError

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
MAX_RETRIES = 40


def migrate_command(path: Path | str) -> str:
    return f"spin fits migrate --store {path}"


class Environment:
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
        check_directory(self.path, writable)  # before liblmdb maps anything
        self.damaged = False
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
                if isinstance(error, lmdb.InvalidError | lmdb.CorruptedError | lmdb.VersionMismatchError):
                    raise damaged(self.path, str(error)) from None
                raise StoreError(
                    f"cannot open fits store {self.path} for writing ({error}); check the --store path "
                    "and its permissions"
                ) from None
            try:
                env.reader_check()  # free the slots of reader processes that died
                _first_transaction(env, self.path, lambda txn: self._initialise(env, txn), write=True)
            except BaseException:
                env.close()
                raise
        else:
            env = open_readonly(self.path)
            try:
                # py-lmdb keeps a database handle opened in a read transaction only when it opens
                # the handle itself.
                self._open_databases(env, None, create=False)
                meta, at = self.meta_db, self.path
                _first_transaction(env, at, lambda txn: check_version(txn.get(META_VERSION, db=meta), at))
            except BaseException:
                env.close()
                raise
        self.env, self.writable = env, writable

    def _initialise(self, env: lmdb.Environment, txn: lmdb.Transaction) -> None:
        """In the writer's first transaction: refuse foreign data, create the tables, set the version."""
        foreign = set(txn.cursor().iternext(keys=True, values=False)) - {FITS_DB, META_DB, EXACT_DB}
        if foreign:
            raise StoreError(
                f"{self.path} is an LMDB environment holding other data, not a fits store; "
                "choose a new or empty --store directory"
            )
        self._open_databases(env, txn, create=True)
        check_version(txn.get(META_VERSION, db=self.meta_db), self.path, create_txn=txn, meta_db=self.meta_db)

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
            if self.damaged:
                raise damaged(self.path, "an earlier transaction found damaged pages")
            try:
                self._pre_grow(estimate_bytes)
            except OSError as error:  # growing the map may extend the file
                raise self._failure(error) from None
            for _ in range(MAX_RETRIES):
                try:
                    with self.env.begin(write=True) as txn:
                        return body(txn)
                except lmdb.MapFullError:
                    self.grow()
                except lmdb.MapResizedError:  # another process grew the map past ours
                    self.env.set_mapsize(0)
                except (lmdb.Error, OSError) as error:
                    raise self._failure(error) from None
            raise StoreError(f"could not grow the map of fits store {self.path}; check free disk space there")

    def read(self, body: Callable[[lmdb.Transaction], _T]) -> _T:
        with self.lock:
            assert self.env is not None
            for _ in range(MAX_RETRIES):
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
                except lmdb.Error as error:
                    raise self._failure(error) from None
            raise StoreError(f"could not follow the map growth of fits store {self.path}; reopen it")

    def _failure(self, error: BaseException) -> BaseException:
        """The StoreError for an error inside a transaction (which LMDB has rolled back)."""
        translated = translate(self.path, error) if isinstance(error, lmdb.Error) else None
        if translated is None and is_disk_error(error):
            translated = disk_full(self.path, error)
        if isinstance(translated, DamagedStoreError):
            self.damaged = True
        return translated or error

    def _pre_grow(self, estimate_bytes: int) -> None:
        if estimate_bytes <= 0:
            return
        assert self.env is not None
        info = self.env.info()
        used = (info["last_pgno"] + 1) * self.env.stat()["psize"]
        if used + estimate_bytes > 0.8 * info["map_size"]:
            self.grow(used + estimate_bytes)


def _first_transaction(
    env: lmdb.Environment, path: str, body: Callable[[lmdb.Transaction], None], write: bool = False
) -> None:
    """Run an opener's first transaction, following a map another process grew meanwhile."""
    for _ in range(MAX_RETRIES):
        try:
            with env.begin(write=write) as txn:
                body(txn)
            return
        except lmdb.MapResizedError:  # a writer grew the map between our open and this begin
            env.set_mapsize(0)
        except lmdb.Error as error:
            translated = translate(path, error)
            if translated is None:
                raise
            raise translated from None
    raise StoreError(f"could not follow the map growth of fits store {path}; open it again")


def open_readonly(path: str) -> lmdb.Environment:
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
        if isinstance(error, lmdb.InvalidError | lmdb.CorruptedError | lmdb.VersionMismatchError):
            raise damaged(path, str(error)) from None
        raise StoreError(f"cannot open fits store {path}: {error}; check the --store path") from None


def check_version(raw: bytes | None, path: str, create_txn: Any = None, meta_db: Any = None) -> None:
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


_OPEN: dict[str, Environment] = {}
_OPEN_LOCK = threading.RLock()  # re-entrant: a FitsStore may be finalised (and released) inside acquire


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


def acquire(path: str, writable: bool, map_size: int, sync: bool) -> Environment:
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
            handle = Environment(path, writable, map_size, sync)
            _OPEN[path] = handle
        elif writable and not handle.writable:
            with handle.lock:
                handle.close()
                handle.open(True, map_size, sync)
        handle.users += 1
        return handle


def release(handle: Environment) -> None:
    with _OPEN_LOCK:
        if handle.pid != os.getpid():
            return
        handle.users -= 1
        if handle.users <= 0:
            with handle.lock:
                handle.close()
            if _OPEN.get(handle.path) is handle:
                del _OPEN[handle.path]
