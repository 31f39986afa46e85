"""A seeded, resumable, rank-sharded stream of dataset draws.

The stream is a pure function of (seed, position): epoch `e` is a permutation (or, with sampling
weights, a weighted draw with replacement) seeded by (seed, e), and rank `r` of `W` takes every
W-th draw of it. Every draw also carries its own augmentation seed, so what a sample looks like
does not depend on which data-loader worker produced it or on whether the run was resumed.
Resuming = building the sampler with `start` = the number of draws this rank already consumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class ResumableSampler(Sampler):
    """Infinite stream of `(index, draw_seed)` for one rank, starting at draw `start`.

    `weights` (N,) optional per-sample sampling weights (mixed datasets); without them every
    epoch is a permutation of range(N). Epoch length is N rounded down to a multiple of
    `world_size`, so every rank sees the same number of draws per epoch.
    """

    def __init__(self, num_samples: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 weights: Sequence[float] | np.ndarray | None = None):
        if num_samples < world_size:
            raise ValueError(f"{num_samples} samples cannot be sharded over {world_size} ranks")
        self.num_samples = num_samples
        self.seed = int(seed)
        self.start = int(start)
        self.rank = rank
        self.world_size = world_size
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if self.weights is not None and self.weights.shape != (num_samples,):
            raise ValueError(f"weights of shape {tuple(self.weights.shape)}, expected ({num_samples},)")
        self.per_rank_epoch = num_samples // world_size

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """All draws of `epoch` for every rank (global order), (per_rank_epoch · world_size,)."""
        generator = torch.Generator().manual_seed(_mix(self.seed, epoch))
        length = self.per_rank_epoch * self.world_size
        if self.weights is None:
            order = torch.randperm(self.num_samples, generator=generator)[:length]
        else:
            order = torch.multinomial(self.weights, length, replacement=True, generator=generator)
        return order.numpy()

    def draw(self, position: int) -> tuple[int, int]:
        """The `position`-th draw of this rank: (dataset index, augmentation seed)."""
        epoch, offset = divmod(position, self.per_rank_epoch)
        return self._draws(epoch, offset, offset + 1)[0]

    def _draws(self, epoch: int, begin: int, end: int) -> list[tuple[int, int]]:
        indices = self.epoch_indices(epoch)[self.rank::self.world_size]
        out = []
        for offset in range(begin, end):
            global_position = (epoch * self.per_rank_epoch + offset) * self.world_size + self.rank
            out.append((int(indices[offset]), _mix(self.seed, global_position, 0xA5)))
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank_epoch)
        while True:
            yield from self._draws(epoch, offset, self.per_rank_epoch)
            epoch, offset = epoch + 1, 0


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence hashing: no correlated streams)."""
    words = np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFF for v in values]).generate_state(2, np.uint64)
    return int(words[0] >> np.uint64(1))


class SeededDraws(Dataset):
    """Wraps a map-style dataset so `dataset[(index, draw_seed)]` runs `dataset[index]` with the
    global `random`, `numpy` and `torch` generators seeded by `draw_seed`, restoring them after.

    The datasets draw their augmentation from those global generators (as SPIN's loader does);
    seeding per draw makes a sample's augmentation independent of worker scheduling and resume.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, draw: tuple[int, int]) -> Any:
        index, seed = draw
        py_state, np_state = random.getstate(), np.random.get_state()
        torch_state = torch.random.get_rng_state()
        try:
            random.seed(seed)
            np.random.seed(seed % (2 ** 32))
            torch.manual_seed(seed)
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.random.set_rng_state(torch_state)
