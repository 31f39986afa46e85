"""Every file and directory the store writes appears complete or not at all.

Written under a temporary name beside the destination, flushed, then renamed into place: a
crash, a full disk or a SIGKILL half-way leaves the destination as it was (absent, or the old
file), never a 0-byte or half-written file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from store.damage import is_disk_error
from store.errors import DiskFullError, StoreError


def check_output(path: Path, overwrite: bool) -> None:
    """A StoreError unless `path` can be written: its folder exists, it is no folder, and it does not
    exist unless `overwrite`."""
    if path.is_dir():
        raise StoreError(f"{path} is a directory; give --out a file name such as {path / 'fits.h5'}")
    if not path.parent.is_dir():
        raise StoreError(f"the folder of {path} does not exist; create it or choose another --out")
    if path.exists() and not overwrite:
        raise StoreError(f"{path} already exists; pass --force to overwrite it, or choose another --out")


def write_atomically(path: Path, write: Callable[[Path], None], overwrite: bool = False) -> None:
    """Write to a temporary file beside `path`, then rename: a failed export leaves no half file."""
    check_output(path, overwrite)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        temporary.replace(path)
        sync_directory(path.parent)
    except OSError as error:
        if is_disk_error(error):
            raise StoreError(
                f"the disk is full writing {path} ({error}); nothing was written there and the store is "
                "unchanged; free space and export again"
            ) from None
        raise StoreError(f"cannot write {path} ({error}); check the --out path and its permissions") from None
    finally:
        temporary.unlink(missing_ok=True)


def sync_directory(folder: Path) -> None:
    """fsync a folder so a rename in it survives a crash (a no-op where folders cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def staging_for(dest: Path) -> Path:
    """A fresh temporary sibling directory of `dest` (same file system, so the rename is atomic)."""
    staging = dest.parent / f".{dest.name}.{os.getpid()}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def publish_directory(staging: Path, dest: Path) -> None:
    """Flush `staging/data.mdb` and rename `staging` to `dest` (absent or an empty directory)."""
    for name in ("data.mdb",):
        with open(staging / name, "rb+") as handle:
            os.fsync(handle.fileno())
    if dest.is_dir():
        dest.rmdir()  # empty: checked by the caller; rename onto a directory needs it gone
    os.rename(staging, dest)
    sync_directory(dest.parent)


def copy_failed(dest: Path, error: BaseException) -> StoreError:
    if is_disk_error(error):
        return DiskFullError(
            f"the disk is full writing the copy at {dest} ({error}); nothing was left at {dest} and the "
            "store itself is unchanged; free space and run the command again"
        )
    return StoreError(f"cannot write the copy at {dest} ({error}); nothing was left there; check the path")
