"""Each round's pictures: the predicted mesh and the stored fit's mesh over fixed training crops.

The same training samples every round (spread over the first training dataset), un-augmented so
that the stored fit (canonical frame) and the prediction share the crop: predicted mesh (blue),
fitted mesh (green) where the sample has a fit, the sample's 2D keypoints (green rings) and both
meshes' reprojected joints (red), drawn by `spin.training.overlays.mesh_overlay`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from spin.camera import CropCamera
from spin.data.augment import AugmentParams
from spin.training.overlays import MESH_COLOURS, denormalise, mesh_overlay, save_png
from spin.training.step import predict, project_normalised

OVERLAY_SIZE = 224  # drawn at SPIN's crop size whatever the network's input resolution


def overlay_rows(size: int, count: int) -> list[int]:
    """`count` fixed row indices spread evenly over a dataset of `size` rows."""
    count = min(count, size)
    return sorted({int(i) for i in np.linspace(0, size - 1, count).round()}) if count > 0 else []


def _to_pixels(normalised: torch.Tensor, camera: CropCamera) -> np.ndarray:
    """(49, 2) in [-1, 1] → crop pixels."""
    return ((normalised.detach().float().cpu().numpy() + 1.0) * 0.5 * camera.crop_res).astype(np.float64)


@torch.no_grad()
def round_overlays(model: torch.nn.Module, body: Any, dataset: Any, store: Any, camera: CropCamera,
                   device: torch.device, count: int, folder: Path,
                   amp_dtype: torch.dtype | None = None) -> tuple[list[str], list[np.ndarray], list[str]]:
    """Write `folder/overlay_XX.png` for `count` training samples; (paths, images, captions)."""
    rows = overlay_rows(len(dataset), count)
    if not rows:
        return [], [], []
    items = [dataset.item(i, AugmentParams()) for i in rows]
    images = torch.stack([item["img"] for item in items]).to(device)
    was_training = model.training
    model.eval()
    pred = predict(model, body, images, camera, need_vertices=True, amp_dtype=amp_dtype)
    model.train(was_training)
    keys = [item["key"] for item in items]
    fits = store.get(keys)
    present = np.asarray(fits["present"], dtype=bool)
    fitted = None
    if present.any():
        out = body(torch.as_tensor(fits["pose"][present], device=device),
                   torch.as_tensor(fits["betas"][present], device=device))
        fit_cam = torch.as_tensor(fits["cam_t"][present], device=device)
        fitted = (out.vertices, fit_cam, project_normalised(out.joints, fit_cam, camera))
    faces = np.asarray(body.faces, dtype=np.int64)
    paths, arrays, captions = [], [], []
    row_of_fit = np.cumsum(present) - 1
    for i, item in enumerate(items):
        shown = denormalise(dataset.display_image(item["img"]))  # non-RGB inputs as grey levels
        crop = Image.fromarray(shown).resize((OVERLAY_SIZE, OVERLAY_SIZE), Image.BILINEAR)
        vertices = [pred.vertices[i].float().cpu().numpy()]
        cams = [pred.cam_t[i].float().cpu().numpy()]
        projected = [_to_pixels(pred.keypoints_2d[i], camera)]
        caption = f"{item['key']}: predicted (blue)"
        if present[i] and fitted is not None:
            j = int(row_of_fit[i])
            vertices.insert(0, fitted[0][j].float().cpu().numpy())
            cams.insert(0, fitted[1][j].float().cpu().numpy())
            projected.insert(0, _to_pixels(fitted[2][j], camera))
            caption += f", fit (green, loss {float(fits['loss'][i]):.1f})"
        colours = MESH_COLOURS if len(vertices) == 2 else MESH_COLOURS[1:]  # fitted green, predicted blue
        array = mesh_overlay(np.asarray(crop), vertices, faces, cams, item["keypoints_crop"].numpy(),
                             projected, focal_length=camera.focal_length, crop_res=camera.crop_res,
                             colours=colours)
        path = folder / f"overlay_{i:02d}.png"
        save_png(array, path)
        paths.append(str(path))
        arrays.append(array)
        captions.append(caption)
    return paths, arrays, captions
