"""Where the project keeps generated files (synthetic body model, synthetic data)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$SPIN_CACHE` if set, else `~/.cache/spin-loop`; created on demand by callers."""
    env = os.environ.get("SPIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "spin-loop"
