"""`spin fits show KEY --png OUT`: a stored fit's mesh over its crop, with keypoints and reprojections."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spin.errors import UserError

GREY = 96  # background of a picture without its image


def fit_picture(record: dict, key: str, data: Path | None, images: Path | None, body_model: Path | None,
                joint_regressor_extra: Path | None) -> np.ndarray:
    """(224, 224, 3) uint8: the fit of `key` (one row of `FitsStore.get`) drawn over the sample's crop.

    With `data` (its SPIN-format `.npz`) the crop of the sample's box and its keypoints are drawn
    too; `images` is the folder or pack its image paths are relative to (default: beside `data`).
    """
    import torch

    from spin.body import BodyModel, resolve_body_files
    from spin.camera import CROP_RES, CropCamera
    from spin.geometry import perspective_projection
    from spin.training.overlays import mesh_overlay

    body = BodyModel.from_files(resolve_body_files(body_model, joint_regressor_extra))
    pose = torch.as_tensor(record["pose"][None], dtype=torch.float32)
    betas = torch.as_tensor(record["betas"][None], dtype=torch.float32)
    cam_t = np.asarray(record["cam_t"], dtype=np.float64)
    with torch.no_grad():
        out = body(pose, betas)
    camera = CropCamera()
    projected = perspective_projection(out.joints, torch.as_tensor(cam_t[None], dtype=torch.float32),
                                       camera.focal_length, torch.tensor(camera.principal_point))[0].numpy()
    crop = np.full((CROP_RES, CROP_RES, 3), GREY, np.uint8)
    keypoints = None
    if data is not None:
        crop, keypoints = _sample_crop(key, data, images)
    return mesh_overlay(crop, [out.vertices[0].numpy()], body.faces, [cam_t], keypoints, projected)


def _sample_crop(key: str, data: Path, images: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """The 224-px crop (224, 224, 3) uint8 and keypoints (49, 3) of the sample `key` names in `data`."""
    from spin.camera import CROP_RES
    from spin.data.augment import crop_image
    from spin.data.datasets import SpinImageDataset

    index = int(key.rpartition("/")[2])
    dataset = SpinImageDataset(data, images, name=key.rpartition("/")[0])
    if not 0 <= index < len(dataset):
        raise UserError(f"{data} has {len(dataset)} samples; {key} is not one of them — pass the dataset "
                        "file the store's fits were made for")
    ann = dataset.annotations
    crop = crop_image(dataset.load_image(index), ann.center[index], float(ann.scale[index]), CROP_RES)
    return crop, ann.keypoints[index]
