"""Random fits for the store tests (a module of its own: every test folder has a `conftest`)."""

from __future__ import annotations

import numpy as np


def random_fits(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """pose (count, 72), betas (count, 10), cam_t (count, 3) float32."""
    return {
        "pose": rng.standard_normal((count, 72)).astype(np.float32),
        "betas": rng.standard_normal((count, 10)).astype(np.float32),
        "cam_t": rng.standard_normal((count, 3)).astype(np.float32),
    }


def keys_for(dataset: str, indices) -> list[str]:
    return [f"{dataset}/{int(i)}" for i in indices]
