"""Telling a damaged or foreign directory from a fits store before liblmdb touches it, and naming
LMDB's failures in words.

A writer must never turn an existing file into a new empty store, nor write into a damaged one;
a reader must get a sentence, not SIGBUS or an assertion abort. `check_directory` runs before
every open: it looks at what the directory holds and checks `data.mdb` against its own meta
pages (`store.pages`) and walks the page headers of the committed B-trees.
`translate` turns an `lmdb.Error` raised inside a transaction into a StoreError.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lmdb

from store import pages
from store.errors import DamagedStoreError, DiskFullError, StoreError

LMDB_FILES = frozenset({"data.mdb", "lock.mdb"})
_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.PanicError,
    lmdb.InvalidError,
    lmdb.BadTxnError,
    lmdb.VersionMismatchError,
)
_SOUND: dict[str, tuple[int, ...]] = {}  # path → (txnid, size, mtime, pid) of the last sound walk
_DISK_WORDS = ("No space left", "File too large", "Disk quota", "Input/output error")


def salvage_command(path: str | os.PathLike) -> str:
    return f"spin fits snapshot --store {path} --out NEW_STORE --salvage"


def damaged(path: str | os.PathLike, why: str) -> DamagedStoreError:
    return DamagedStoreError(
        f"fits store {path} is damaged ({why}); nothing is written to it: see `spin fits verify --store "
        f"{path}` and copy every readable fit into a new store with `{salvage_command(path)}`"
    )


def check_directory(path: str | os.PathLike, writable: bool) -> None:
    """Raise a StoreError unless `path` is a sound fits store, or (writers) a new or empty directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise StoreError(f"{path} is a file, not a fits store directory; point --store at a directory")
    data = path / "data.mdb"
    if not data.exists():
        if not writable:
            raise StoreError(
                f"no fits store at {path}; create one with `spin fits import` or `spin fits init`, "
                "or check the --store path"
            )
        others = sorted(entry.name for entry in path.iterdir() if entry.name not in LMDB_FILES) if (
            path.is_dir()
        ) else []
        if others:
            raise StoreError(
                f"{path} holds other files ({', '.join(others[:3])}) and no fits store; choose a new or "
                "empty --store directory"
            )
        return
    if not data.is_file():
        raise StoreError(f"{data} is not a file; {path} is not a fits store")
    if data.stat().st_size == 0:
        raise damaged(path, "data.mdb is empty, 0 bytes, as an interrupted copy leaves it")
    try:
        meta = pages.read_meta(path)
    except pages.DamagedFile as error:
        raise damaged(path, str(error)) from None
    stamp = (meta.txnid, meta.file_size, data.stat().st_mtime_ns, os.getpid())
    if _SOUND.get(str(path)) == stamp:
        return  # this process walked this very file already
    problems = structure_problems(path)
    if not problems:
        _SOUND[str(path)] = stamp
    if problems:
        more = f", and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise damaged(path, problems[0] + more)


def structure_problems(path: str | os.PathLike, attempts: int = 3) -> list[str]:
    """Damage in the page headers of the committed trees (~10 µs a page, ~1 s a million fits).

    A damaged page that liblmdb reaches later would abort the process from inside an assertion.
    The walk holds no reader slot, so a writer committing meanwhile may reuse pages it reads:
    problems count only when the committed transaction did not change during the walk. A store
    that keeps changing under every attempt has a live, working writer, and is left to LMDB.
    """
    for _ in range(attempts):
        before = pages.read_meta(path).txnid
        problems = pages.walk(path).problems
        if not problems:
            return []
        try:
            if pages.read_meta(path).txnid == before:
                return problems
        except pages.DamagedFile as error:
            return [str(error)]
    return []


def disk_full(path: str | os.PathLike, error: BaseException) -> DiskFullError:
    return DiskFullError(
        f"the disk holding fits store {path} is full or refuses to grow the file ({error}); this batch "
        "was not written and every fit committed before it is kept; free space and run the command again"
    )


def is_disk_error(error: BaseException) -> bool:
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    return isinstance(error, lmdb.Error | OSError) and any(word in str(error) for word in _DISK_WORDS)


def translate(path: str | os.PathLike, error: lmdb.Error) -> StoreError | None:
    """The StoreError for an LMDB failure inside a transaction, or None for one not ours to name."""
    if isinstance(error, _DAMAGE):
        return damaged(path, str(error))
    if is_disk_error(error):
        return disk_full(path, error)
    return None
