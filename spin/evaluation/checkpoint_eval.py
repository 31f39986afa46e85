"""`spin eval`: score a checkpoint (this project's or SPIN's) on a SPIN-format test file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spin.errors import UserError
from spin.evaluation.protocol_eval import ProtocolResult


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, images: str | Path | None = None,
                        batch_size: int = 64, device: str = "auto", out: str | Path | None = None,
                        num_workers: int = 0, protocol: str | None = None,
                        body_model: str | Path | None = None,
                        joint_regressor_extra: str | Path | None = None,
                        joint_regressor_h36m: str | Path | None = None,
                        img_res: int | None = None, representation: str | None = None) -> ProtocolResult:
    """Rebuild the regressor of `checkpoint` and evaluate it on `data` (a SPIN `.npz`; images from
    `images` or the npz's folder) under `protocol` (default: SPIN's protocol for SPIN's test file
    names, else "synthetic").

    Body model: `body_model` (file or folder) when given, else the checkpoint's saved config
    (this project's checkpoints) or the synthetic model (SPIN's, which carry no config). Input
    resolution: `img_res`, else the saved config's, else 224. Input representation (NBF's rgb,
    silhouette, parts*, heatmaps*): always the one the checkpoint was trained on
    (`data.synthetic.representation` of its saved config; rgb for SPIN's); `representation`, when
    given, must name that same one (a contradiction is a UserError). `out`: an `.npz` with `pose` (N,72),
    `betas` (N,10), `cam` (N,3), `sample_index` and the per-sample errors (`error_<metric>`, with
    `error_sample_index` naming their rows), written to exactly that path (temporary name + rename).
    """
    from spin.body import BodyModel, resolve_body_files
    from spin.camera import CropCamera
    from spin.data.datasets import SpinImageDataset
    from spin.evaluation.protocol_eval import evaluate_protocol, gendered_bodies, load_h36m_regressor
    from spin.evaluation.protocols import PROTOCOLS, protocol_for_file
    from spin.models import ModelConfig, read_regressor
    from spin.training.trainer import select_device

    dev = select_device(device)
    loaded = read_regressor(checkpoint, ModelConfig(img_res=img_res) if img_res else None)
    saved = loaded.config
    body_cfg = saved.body if saved is not None else None
    files = resolve_body_files(
        body_model if body_model is not None else (body_cfg.body_model if body_cfg else None),
        joint_regressor_extra if joint_regressor_extra is not None
        else (body_cfg.joint_regressor_extra if body_cfg and body_model is None else None),
        body_cfg.prior if body_cfg else None, body_cfg.mean_params if body_cfg else None,
        joint_regressor_h36m=joint_regressor_h36m)
    body = BodyModel.from_files(files).to(dev)
    model = loaded.model.to(dev)
    res = img_res or (saved.model.img_res if saved is not None else model.config.img_res)
    kind = checkpoint_representation(loaded, checkpoint, representation)
    dataset = SpinImageDataset(data, images, img_res=res, augment=None, representation=kind)
    check_inputs_exist(dataset, checkpoint)
    name = protocol or protocol_for_file(Path(data).stem)
    spec = PROTOCOLS.get(name)
    h36m = None
    if spec is not None and spec.needs_h36m_regressor:
        h36m = load_h36m_regressor(files.joint_regressor_h36m, name)
    by_gender = gendered_bodies(files, body) if spec and spec.gt_source == "smpl_gendered" else None
    amp = None
    if dev.type == "cuda" and saved is not None:
        amp = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[saved.optim.amp]
    camera = None
    if saved is not None:  # the crop camera the run trained and fitted in
        camera = CropCamera(saved.fitting.smplify.focal_length, saved.fitting.smplify.img_res)
    result = evaluate_protocol(model, body, dataset, name, h36m, by_gender, batch_size=batch_size,
                               device=dev, amp_dtype=amp, num_workers=num_workers, camera=camera)
    if out is not None:
        write_predictions(result, out)
    return result


def checkpoint_representation(loaded, checkpoint: str | Path, wanted: str | None = None) -> str:
    """The input representation a loaded checkpoint (`LoadedRegressor`) was trained on: its saved
    config's `data.synthetic.representation`, rgb for SPIN's checkpoints (no config). `wanted` (the
    user's `--representation`) must be that one; anything else is one UserError sentence."""
    from spin.data.representations import REPRESENTATIONS

    saved = loaded.config
    trained = saved.data.synthetic.representation if saved is not None else "rgb"
    if wanted is not None and wanted not in REPRESENTATIONS:
        raise UserError(f"--representation is {wanted!r}; use one of {', '.join(REPRESENTATIONS)} (or leave "
                        f"it out: the checkpoint's own, {trained}, is used).")
    if wanted is not None and wanted != trained:
        source = "data.synthetic.representation in its saved config" if saved is not None else \
            "SPIN's checkpoints read RGB images"
        raise UserError(f"Checkpoint {checkpoint} was trained on {trained!r} inputs ({source}) and cannot be "
                        f"evaluated on {wanted!r}; drop --representation or pass {trained}.")
    return trained


def check_inputs_exist(dataset, checkpoint: str | Path) -> None:
    """Before any batch: a non-RGB representation needs the synthetic renderer's part map beside each
    image; a test file without them is one UserError sentence (not an error mid-evaluation)."""
    if dataset.representation == "rgb" or len(dataset) == 0:
        return
    try:
        dataset.load_part_map(0)
    except UserError:
        raise UserError(f"Checkpoint {checkpoint} reads {dataset.representation!r} inputs, built from the "
                        f"part map beside each image, but {dataset.annotations.path.name} has none (first "
                        f"image: {dataset.annotations.imgname[0]}); evaluate it on a split the synthetic "
                        "renderer wrote (`spin data synth`, or the run's own test split).") from None


def write_predictions(result: ProtocolResult, out: str | Path) -> Path:
    """The predictions and per-sample errors as an `.npz` at exactly `out` (temporary name + rename)."""
    from spin.atomic_io import atomic_output, check_new_output

    out = check_new_output(out, force=True, what="Predictions file")
    arrays = dict(result.predictions)
    arrays.update({f"error_{k}": v for k, v in result.per_sample.items()})
    arrays["protocol"] = np.array(result.protocol)
    with atomic_output(out) as tmp, open(tmp, "wb") as fh:  # a file handle: savez adds no ".npz"
        np.savez(fh, **arrays)
    return out
