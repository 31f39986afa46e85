"""Validating a batch of candidate fits before it reaches a transaction, and what became of it.

`Candidates` is one `put_if_better` call's arguments as arrays of the stored dtypes and exact
shapes (a StoreError names a wrong argument); `usable` says which candidates may be stored at
all. Both the store and the store actor (which merges callers' batches) validate through here.
"""

from __future__ import annotations

import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from store import schema
from store.errors import StoreError


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


@dataclass
class Candidates:
    """One batch of B candidate fits in the stored dtypes; see `validate_candidates`."""

    keys: list[str]
    names: list[str]  # (B) dataset names
    indices: np.ndarray  # (B,) int64 sample indices
    pose: np.ndarray  # (B, 72) float32
    betas: np.ndarray  # (B, 10) float32
    cam_t: np.ndarray  # (B, 3) float32
    loss: np.ndarray  # (B,) float64
    round: np.ndarray  # (B,) int64
    step: np.ndarray  # (B,) int64
    source: np.ndarray  # (B,) uint8 codes into schema.SOURCES
    time: np.ndarray | None  # (B,) float64 unix seconds, None: "now" at the write

    def __len__(self) -> int:
        return len(self.keys)

    def finite(self) -> np.ndarray:
        """(B,) bool: every number finite (after the cast to the stored dtypes)."""
        with np.errstate(invalid="ignore", over="ignore"):
            return (
                np.isfinite(self.pose).all(axis=1)
                & np.isfinite(self.betas).all(axis=1)
                & np.isfinite(self.cam_t).all(axis=1)
                & np.isfinite(self.loss)
            )

    def negative_loss(self) -> np.ndarray:
        """(B,) bool: the loss is below 0 (-0.0 is not); no real reprojection loss is."""
        with np.errstate(invalid="ignore"):
            return self.loss < 0


def validate_candidates(
    keys: Sequence[str],
    pose: Any,
    betas: Any,
    cam_t: Any,
    loss: Any,
    round: Any = 0,
    step: Any = 0,
    source: str | Sequence[str] | np.ndarray = "smplify",
    time: Any = None,
) -> Candidates:
    """`put_if_better`'s arguments → `Candidates`, or a StoreError naming the wrong argument or key."""
    keys = list(keys)
    count = len(keys)
    names, indices = schema.parse_keys(keys)
    rounds = per_candidate(round, count, "round", np.int64)
    if count and (rounds.min() < 0 or rounds.max() > np.iinfo(np.uint32).max):
        raise StoreError(f"`round` must lie in 0..{np.iinfo(np.uint32).max}")
    return Candidates(
        keys=keys,
        names=names,
        indices=indices,
        pose=batch_array(pose, (count, schema.NUM_POSE), "pose", np.float32),
        betas=batch_array(betas, (count, schema.NUM_BETAS), "betas", np.float32),
        cam_t=batch_array(cam_t, (count, schema.NUM_CAM), "cam_t", np.float32),
        loss=batch_array(loss, (count,), "loss", np.float64),
        round=rounds,
        step=per_candidate(step, count, "step", np.int64),
        source=schema.source_codes(source, count),
        time=None if time is None else per_candidate(time, count, "time", np.float64),
    )


def stamp_times(candidates: Candidates) -> np.ndarray:
    """(B,) write times: the given ones, or now."""
    if candidates.time is None:
        return np.full(len(candidates), _time.time())
    return candidates.time


def concat_candidates(parts: Sequence[Candidates]) -> Candidates:
    """Several callers' batches as one, in order; parts without times are stamped now."""
    now = _time.time()
    return Candidates(
        keys=[key for part in parts for key in part.keys],
        names=[name for part in parts for name in part.names],
        indices=np.concatenate([part.indices for part in parts]),
        pose=np.concatenate([part.pose for part in parts]),
        betas=np.concatenate([part.betas for part in parts]),
        cam_t=np.concatenate([part.cam_t for part in parts]),
        loss=np.concatenate([part.loss for part in parts]),
        round=np.concatenate([part.round for part in parts]),
        step=np.concatenate([part.step for part in parts]),
        source=np.concatenate([part.source for part in parts]),
        time=np.concatenate([np.full(len(p), now) if p.time is None else p.time for p in parts]),
    )
