"""What travels between the trainer and the fitting actors: job batches in, small outcome summaries out.

`FitJobBatch` is the one job type of the project: the trainer (async and sync modes), `spin fit`
and `spin fits init` all build it, and it is validated once, in `__post_init__`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fitting_workers.counts import FitCounts
from spin.joints import NUM_KEYPOINTS


def _float32_array(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    array = np.ascontiguousarray(value, dtype=np.float32)
    if array.shape != shape:
        raise ValueError(f"FitJobBatch.{name} has shape {array.shape}; expected {shape}.")
    return array


@dataclass
class FitJobBatch:
    """A batch of fitting jobs in the sample's canonical frame (no augmentation).

    keys: B store keys `<dataset>/<index>`; keypoints (B, 49, 3) in the 224-px crop (x, y, conf);
    pose (B, 72) axis-angle initialisation; betas (B, 10); cam_t (B, 3) or None (SMPLify then
    estimates the camera from the keypoints); step: the training step of the predictions (for
    staleness); round: the training round written with accepted fits. Arrays become float32.
    """

    keys: list[str]
    keypoints: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    cam_t: np.ndarray | None = None
    step: int = 0
    round: int = 0

    def __post_init__(self) -> None:
        self.keys = [str(key) for key in self.keys]
        n = len(self.keys)
        if n == 0:
            raise ValueError("FitJobBatch needs at least one key.")
        self.keypoints = _float32_array("keypoints", self.keypoints, (n, NUM_KEYPOINTS, 3))
        self.pose = _float32_array("pose", self.pose, (n, 72))
        self.betas = _float32_array("betas", self.betas, (n, 10))
        if self.cam_t is not None:
            self.cam_t = _float32_array("cam_t", self.cam_t, (n, 3))
        self.step = int(self.step)
        self.round = int(self.round)

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, part: slice) -> FitJobBatch:
        """The jobs in `part` (same step and round); an empty slice is a ValueError."""
        return FitJobBatch(keys=self.keys[part], keypoints=self.keypoints[part], pose=self.pose[part],
                           betas=self.betas[part], cam_t=None if self.cam_t is None else self.cam_t[part],
                           step=self.step, round=self.round)

    def split(self, n: int) -> tuple[FitJobBatch, FitJobBatch | None]:
        """The first `n` jobs, and the rest (None when nothing is left)."""
        if n >= len(self):
            return self, None
        return self.take(slice(0, n)), self.take(slice(n, None))


def concat_jobs(parts: Sequence[FitJobBatch]) -> FitJobBatch:
    """One batch of all `parts`' jobs, in order, with the step and round of the last part.

    cam_t is kept when every part has one, and dropped (SMPLify estimates it) when none has; a mix
    is a ValueError.
    """
    if not parts:
        raise ValueError("concat_jobs needs at least one batch.")
    if len(parts) == 1:
        return parts[0]
    with_cam = [part.cam_t is not None for part in parts]
    if any(with_cam) and not all(with_cam):
        raise ValueError("concat_jobs: some batches have cam_t and some do not.")
    last = parts[-1]
    return FitJobBatch(keys=[key for part in parts for key in part.keys],
                       keypoints=np.concatenate([part.keypoints for part in parts]),
                       pose=np.concatenate([part.pose for part in parts]),
                       betas=np.concatenate([part.betas for part in parts]),
                       cam_t=np.concatenate([part.cam_t for part in parts]) if all(with_cam) else None,
                       step=last.step, round=last.round)


@dataclass
class BatchOutcome:
    """What an actor reports for one batch: counts only, never the fits (those go to the store).

    `error` is None on success, else one line naming what went wrong (the batch then counts as
    errors: nothing of it was written). `incarnation` changes when Ray restarts the actor.
    """

    size: int
    counts: FitCounts = field(default_factory=FitCounts)
    step: int = 0
    node_id: str = ""
    incarnation: str = ""
    error: str | None = None


def error_line(exc: BaseException) -> str:
    """An exception as the one line an outcome carries: `Type: first line of the message`."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
