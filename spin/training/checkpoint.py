"""Checkpoints written atomically (temp file + rename), with every RNG the run draws from."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spin.atomic_io import atomic_output
from spin.errors import UserError


def rng_state() -> dict[str, Any]:
    """The state of python's, numpy's and torch's global generators (CUDA too when present)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.random.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` to `path` so that a reader sees the old file or the complete new one, never a
    partial one (a kill mid-write leaves only a stray temp file, which the next save replaces)."""
    path = Path(path)
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            torch.save(state, handle)
    except BaseException as exc:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL or _disk_full_cause(exc):
            kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
            raise UserError(f"The disk is full writing checkpoint {path}; {kept}. Free space on "
                            f"{path.parent} and continue with `spin train --resume`.") from None
        raise
    return path


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def _disk_full_cause(exc: BaseException) -> bool:
    """torch.save wraps a failed write in a RuntimeError ("... file write failed"): look at its cause."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.errno in DISK_FULL:
        return True
    return isinstance(exc, RuntimeError) and "write failed" in str(exc)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint`; a missing or unreadable file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; pass a .pt file from a run folder "
                        "(runs/<name>/last.pt or runs/<name>/round_XXX/checkpoint.pt).")
    try:
        # Our own files: they hold RNG states and config objects, not only tensors.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise UserError(f"Checkpoint {path} cannot be read ({type(err).__name__}); "
                        "use another checkpoint of the run.") from None
