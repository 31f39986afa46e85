"""`spin eval`: score a checkpoint on a SPIN-format test file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from spin.evaluation.evaluate import EvalResult, evaluate_model


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, images: str | Path | None = None,
                        batch_size: int = 64, device: str = "auto", out: str | Path | None = None,
                        num_workers: int = 0) -> EvalResult:
    """Rebuild the regressor and body model of `checkpoint` (its saved config) and evaluate it on
    `data` (a SPIN `.npz`; images from `images` or the npz's folder). `out`: write an `.npz` with
    the keys, predictions (`pose`, `betas`, `cam`, `joints`) and per-sample errors (mm)."""
    from spin.body import BodyModel, resolve_body_files
    from spin.config import config_from_dict
    from spin.data.datasets import SpinImageDataset
    from spin.models import Regressor
    from spin.training.checkpoint import load_checkpoint
    from spin.training.trainer import select_device

    state = load_checkpoint(checkpoint)
    config = config_from_dict(state["config"])
    dev = select_device(device)
    body_files = resolve_body_files(config.body.body_model, config.body.joint_regressor_extra,
                                    config.body.prior, config.body.mean_params)
    body = BodyModel.from_files(body_files).to(dev)
    placeholder = {"pose": np.zeros(144, np.float32), "shape": np.zeros(10, np.float32),
                   "cam": np.zeros(3, np.float32)}  # overwritten by the checkpoint's buffers
    model = Regressor(config.model, placeholder)
    model.load_state_dict(state["model"])
    model.to(dev)
    dataset = SpinImageDataset(data, images, img_res=config.model.img_res, augment=None)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda")
    amp = None
    if dev.type == "cuda":
        amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.optim.amp]
    result = evaluate_model(model, body, loader, dev, amp_dtype=amp)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in result.predictions.items()}
        arrays.update({f"error_{k}": v for k, v in result.per_sample.items()})
        np.savez(out, **arrays)
    return result
