"""Files that appear complete or not at all: write to a temporary name beside the target, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spin.errors import UserError
from store.atomic import sync_directory


def check_new_output(path: str | Path, force: bool, what: str = "Output") -> Path:
    """The output path, refused when it is a folder, or an existing file without ``force``."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file path.")
    if path.exists() and not force:
        raise UserError(f"{what} {path} already exists; pass --force to replace it, or choose another path.")
    return path


def check_output_dir(path: str | Path, what: str = "Output folder") -> Path:
    """A folder to write into: refused when the path exists and is not a folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; give a folder path.")
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` when the block ends
    without an exception, delete it otherwise. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:  # on disk before the rename, so a crash never shows half
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
        sync_directory(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
