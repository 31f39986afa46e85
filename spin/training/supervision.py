"""3D supervision for a batch: the store's best-so-far fits, augmented and filtered, GT overriding.

SPIN's rules, as one pure function (`build_supervision`): a stored fit supervises when its loss is
below the threshold; a fit with any |β| > 3 supervises with zero betas; ground-truth SMPL, where a
sample has it, replaces the fit and always supervises. Fits are stored in the sample's canonical
frame and are moved into the batch's augmented frame with the sample's own flip and rotation.

`CollateWithFits` reads the fits for a batch's keys inside the data loader (worker processes when
`num_workers` > 0), so the read is prefetched with the images and stays off the optimiser step.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate

from spin.data.augment import augment_pose

EXTREME_BETA = 3.0
FIT_FIELDS = ("pose", "betas", "loss", "present")


@dataclass
class Supervision:
    """Per-sample 3D targets in the augmented frame.

    pose (B,72) axis-angle, betas (B,10); valid (B,) bool: the target supervises (fit under the
    threshold, or ground truth); from_fit (B,) bool: a store fit supervises (not GT);
    present (B,) bool: the store had a fit for the key; fit_loss (B,) stored loss (inf if absent).
    """

    pose: torch.Tensor
    betas: torch.Tensor
    valid: torch.Tensor
    from_fit: torch.Tensor
    present: torch.Tensor
    fit_loss: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Supervision:
        return Supervision(**{k: getattr(self, k).to(device, non_blocking=non_blocking)
                              for k in self.__dataclass_fields__})

    def pin_memory(self) -> Supervision:
        """Called by the DataLoader's pin-memory thread (CUDA runs)."""
        return Supervision(**{k: getattr(self, k).pin_memory() for k in self.__dataclass_fields__})


def build_supervision(fits: dict[str, Any], flip: torch.Tensor, rot_deg: torch.Tensor, gt_pose: torch.Tensor,
                      gt_betas: torch.Tensor, has_smpl: torch.Tensor, threshold: float) -> Supervision:
    """SPIN's supervision rules for one batch.

    fits: canonical-frame `pose` (B,72), `betas` (B,10), `loss` (B,), `present` (B,) (as
    `FitsStore.get` returns them, numpy or torch); flip (B,) bool and rot_deg (B,) the samples'
    augmentation; gt_pose (B,72), gt_betas (B,10) augmented ground truth, has_smpl (B,) bool.
    """
    pose = torch.as_tensor(np.asarray(fits["pose"]), dtype=torch.float32)
    betas = torch.as_tensor(np.asarray(fits["betas"]), dtype=torch.float32).clone()
    loss = torch.as_tensor(np.asarray(fits["loss"]), dtype=torch.float64)
    present = torch.as_tensor(np.asarray(fits["present"]), dtype=torch.bool)
    has_smpl = has_smpl.bool()
    pose = torch.as_tensor(augment_pose(pose, flip.bool(), rot_deg.float()), dtype=torch.float32)
    betas[(betas.abs() > EXTREME_BETA).any(dim=-1)] = 0.0
    from_fit = present & torch.isfinite(loss) & (loss < threshold) & ~has_smpl
    pose = torch.where(has_smpl[:, None], gt_pose.float(), pose)
    betas = torch.where(has_smpl[:, None], gt_betas.float(), betas)
    return Supervision(pose=pose, betas=betas, valid=from_fit | has_smpl, from_fit=from_fit, present=present,
                       fit_loss=loss.float())


def empty_fits(count: int) -> dict[str, np.ndarray]:
    """What `FitsStore.get` returns for `count` absent keys."""
    return {"pose": np.zeros((count, 72), np.float32), "betas": np.zeros((count, 10), np.float32),
            "loss": np.full(count, np.inf), "present": np.zeros(count, bool)}


class StoreFitReader:
    """Reads fits by key from a local store directory, read-only.

    Picklable (a path), so it can travel into spawned data-loader workers; forked workers inherit
    the read-only `FitsStore` made here, whose handle reopens itself in the child on first use (an
    LMDB environment never crosses a fork). A store that does not exist yet reads as all-absent
    until it appears.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._store = None
        self._open_if_present()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])

    def _open_if_present(self) -> None:
        if self._store is None and (self.path / "data.mdb").exists():
            from store import FitsStore

            self._store = FitsStore(self.path, readonly=True)

    def read(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        self._open_if_present()
        if self._store is None:
            return empty_fits(len(keys))
        fits = self._store.get(list(keys))
        return {name: fits[name] for name in FIT_FIELDS}


class CollateWithFits:
    """`default_collate`, plus `fits` (canonical, as stored) and `supervision` (a `Supervision`).

    reader None: no store read (sync mode reads inside the step, after it fitted the batch).
    """

    def __init__(self, reader: StoreFitReader | None, threshold: float):
        self.reader = reader
        self.threshold = threshold

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(samples)
        if self.reader is not None:
            fits = self.reader.read(batch["key"])
            batch["supervision"] = build_supervision(fits, batch["flip"], batch["rot"], batch["pose"],
                                                     batch["betas"], batch["has_smpl"], self.threshold)
        return batch
