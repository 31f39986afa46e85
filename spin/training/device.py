"""The run's torch device and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from spin.errors import UserError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def select_device(name: str) -> torch.device:
    """`auto` (CUDA when available), `cpu`, `cuda`, `cuda:N` or `mps`; anything else is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise UserError(f"Config key device is {name!r}, which is not a device this trainer runs on; "
                        "set device=auto, cpu, cuda or cuda:N.")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"Config device is '{name}' but CUDA is not available here; set device=cpu or auto.")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
