"""Unpaired real bodies for the adversarial prior: a bank of SMPL (pose, betas) with its own sampler.

A bank comes from the user's `.npz` of SMPL parameters (for example MoSh'd mocap: `pose` (N,72)
axis-angle with the global orientation first, and `shape` or `betas` (N, ≥10)), or, by default,
from the project's synthetic distribution: the same pose sampler, orientation and shape
distribution that `spin data synth` draws its people from, on a seed stream of its own so the
bank never holds the training set's very bodies. Sampling draws rows uniformly with replacement
from a seeded generator whose state travels in `state_dict`, so a resumed run draws the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from spin.data.smpl_params import NUM_BETAS, NUM_POSE, read_smpl_params
from spin.errors import UserError

# Mixed into the seed of a generated bank (and of the sampler), so neither shares a stream with
# the synthetic dataset drawn from the same seed.
_BANK_STREAM = 0x0BA4C
_SAMPLER_STREAM = 0x5A3D1


class PoseBank:
    """SMPL bodies pose (N,72) and betas (N,10), float32, and a seeded uniform sampler over them."""

    def __init__(self, pose: np.ndarray, betas: np.ndarray, seed: int = 0, source: str = "") -> None:
        pose = np.asarray(pose, dtype=np.float32)
        betas = np.asarray(betas, dtype=np.float32)
        if pose.ndim != 2 or pose.shape[1] != NUM_POSE or betas.shape != (len(pose), NUM_BETAS) \
                or not len(pose):
            raise ValueError(f"pose bank needs pose (N,72) and betas (N,10) with N ≥ 1, got "
                             f"{pose.shape} and {betas.shape}")
        self.pose = pose
        self.betas = betas
        self.source = source
        self._rng = np.random.default_rng([seed, _SAMPLER_STREAM])

    def __len__(self) -> int:
        return len(self.pose)

    def sample(self, n: int, device: torch.device | str = "cpu", rank: int = 0,
               world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """n rows drawn uniformly with replacement: pose (n,72) and betas (n,10) float32 on `device`.

        On `world_size` data-parallel ranks every rank draws the same n·world_size rows and keeps its
        own n: the ranks see different bodies while their generators stay equal, so the one state
        a checkpoint saves resumes every rank exactly.
        """
        rows = self._rng.integers(0, len(self.pose), n * world_size)[rank * n:(rank + 1) * n]
        return (torch.from_numpy(self.pose[rows]).to(device), torch.from_numpy(self.betas[rows]).to(device))

    def state_dict(self) -> dict[str, Any]:
        """The sampler's generator state (the bank's rows are rebuilt from config, not stored)."""
        return {"rng": self._rng.bit_generator.state, "size": len(self.pose)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the sampler; a bank of another size than the saved one cannot continue it."""
        if int(state["size"]) != len(self.pose):
            raise UserError(f"The checkpoint's pose bank held {state['size']} bodies but "
                            f"{self.source or 'this bank'} holds {len(self.pose)}; resume with the same "
                            "adversarial.bank settings.")
        self._rng.bit_generator.state = state["rng"]


def load_pose_bank(path: str | Path, seed: int = 0) -> PoseBank:
    """A bank from an `.npz` with `pose` (N,72) and `shape` or `betas` (N, ≥10; the first 10 are kept)."""
    arrays = read_smpl_params(path, "Pose bank file", "set adversarial.bank to an .npz of SMPL parameters "
                              "(keys pose and shape) or to null for the generated bank")
    return PoseBank(arrays["pose"], arrays["betas"], seed=seed, source=str(path))


def synthetic_pose_bank(size: int, seed: int = 0) -> PoseBank:
    """`size` bodies from the synthetic dataset's distribution (`spin.data.synthetic.sample_split`)."""
    from spin.data.synthetic import SynthConfig, sample_split

    if size < 1:
        raise UserError(f"adversarial.bank_size is {size}; set it to 1 or more.")
    samples = sample_split(size, np.random.default_rng([seed, _BANK_STREAM]), SynthConfig())
    source = f"synthetic bank (seed {seed}, {size} bodies)"
    return PoseBank(samples.pose, samples.betas, seed=seed, source=source)


def build_pose_bank(path: str | Path | None, size: int, seed: int = 0) -> PoseBank:
    """The user's bank at `path`, or the generated synthetic one of `size` bodies when `path` is None."""
    return load_pose_bank(path, seed) if path else synthetic_pose_bank(size, seed)
