"""What travels between the trainer and the fitting actors: job batches in, small outcome summaries out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass
class FitBatchOutcome:
    """What an actor reports for one batch: counts only, never the fits (those go to the store).

    `error` is None on success, else one line naming what went wrong (the batch then counts as
    lost: nothing of it was written). `loss_sum` and `valid` cover the fits SMPLify did not flag
    as failed; `valid` counts those under the SMPLify threshold. `improved` counts accepted
    candidates for keys that already had a fit. `incarnation` changes when Ray restarts the actor.
    """

    size: int
    fitted: int = 0
    failed: int = 0
    accepted: int = 0
    improved: int = 0
    valid: int = 0
    loss_sum: float = 0.0
    fit_seconds: float = 0.0
    write_seconds: float = 0.0
    step: int = 0
    node_id: str = ""
    incarnation: str = ""
    error: str | None = None


def error_line(exc: BaseException) -> str:
    """An exception as the one line an outcome carries: `Type: first line of the message`."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
