"""Run logging: wandb (offline unless the user chose otherwise), rank 0 only, or nothing."""

from __future__ import annotations

import math
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np


class RunLogger:
    """Thin wrapper over a wandb run; every method is a no-op when logging is disabled.

    `run_id` resumes the same wandb run after `--resume` (`resume="allow"`).
    """

    def __init__(self, enabled: bool, run_dir: Path, project: str, name: str, config: dict[str, Any],
                 run_id: str | None = None, mode: str | None = None, entity: str | None = None,
                 tags: list[str] | None = None):
        self.run = None
        self.run_id = run_id
        if not enabled:
            return
        import wandb

        chosen = mode or os.environ.get("WANDB_MODE") or "offline"
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run_id = run_id or secrets.token_hex(4)  # wandb's id format: short, lowercase
        self.run = wandb.init(dir=str(run_dir), id=self.run_id, resume="allow", mode=chosen, project=project,
                              entity=entity, name=name, config=config, tags=tags or None,
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.run is None:
            return
        clean = {k: v for k, v in values.items()
                 if not (isinstance(v, float) and not math.isfinite(v)) and v is not None}
        self.run.log(clean, step=step)

    def log_images(self, key: str, images: list[np.ndarray], captions: list[str], step: int) -> None:
        if self.run is None or not images:
            return
        import wandb

        self.run.log({key: [wandb.Image(img, caption=c) for img, c in zip(images, captions, strict=True)]},
                     step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
