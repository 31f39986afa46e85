"""NBF's representations through the dataset: same crop, same keypoints, inputs built from the part map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from spin.data.augment import AugmentParams
from spin.data.datasets import SpinImageDataset
from spin.data.representations import HEATMAP_JOINTS, REPRESENTATIONS, part_map_name, representation_channels
from spin.errors import UserError
from spin.joints import NUM_OPENPOSE

RES = 48
AUGMENTED = (AugmentParams(), AugmentParams(flip=True, rot_deg=20.0, scale=1.1, pixel_noise=(0.7, 1.2, 1.0)))


@pytest.mark.parametrize("params", AUGMENTED)
def test_every_representation_has_the_same_person_labels_and_keypoints(noise_free_data, params):
    _, paths = noise_free_data
    items = {kind: SpinImageDataset(paths["train"], img_res=RES, representation=kind).item(3, params)
             for kind in REPRESENTATIONS}
    rgb = items["rgb"]
    for kind, item in items.items():
        assert item["img"].shape == (representation_channels(kind), RES, RES), kind
        for key in ("keypoints", "keypoints_crop", "pose", "betas", "pose_3d", "has_smpl", "key"):
            value, ref = item[key], rgb[key]
            assert (value == ref) if isinstance(value, str) else torch.equal(value, ref), (kind, key)
    silhouette = items["silhouette"]["img"][0]
    assert 0 < silhouette.mean() < 1
    assert set(torch.unique(silhouette).tolist()) <= {0.0, 1.0}
    for n in (3, 6, 12, 24):
        parts = items[f"parts{n}"]["img"]
        assert torch.equal(parts.sum(0), silhouette), n  # one part per body pixel, none outside
    # the heatmaps peak where the (augmented) ground-truth keypoints are, in crop pixels
    maps = items["heatmaps24"]["img"]
    kp = rgb["keypoints"][NUM_OPENPOSE:]
    for j in range(24):
        x, y = ((kp[j, :2] + 1.0) * RES / 2.0).tolist()
        if kp[j, 2] > 0 and 0 <= x < RES and 0 <= y < RES:
            peak = np.unravel_index(int(maps[j].argmax()), maps[j].shape)
            assert abs(peak[1] + 0.5 - x) <= 1.0 and abs(peak[0] + 0.5 - y) <= 1.0, j
    assert torch.equal(items["heatmaps14"]["img"], maps[: len(HEATMAP_JOINTS[14])])


def test_the_silhouette_covers_the_rendered_person(noise_free_data):
    """The part map lines up with the image: the rendered body differs from the background where it is."""
    out, paths = noise_free_data
    dataset = SpinImageDataset(paths["test"], img_res=RES, representation="silhouette")
    image = np.asarray(dataset.load_image(0)).astype(np.float64)
    labels = dataset.load_part_map(0)
    assert labels.shape == image.shape[:2] and (labels >= 0).any()
    # the shaded body is far brighter than the dark cluttered background: the labels sit on the body
    inside = labels >= 0
    assert image[inside].mean() > image[~inside].mean() + 60
    crop = dataset.item(0, AugmentParams())["img"][0]
    assert crop.sum() > 0


def test_a_missing_part_map_is_one_clear_error(noise_free_data, tmp_path):
    out, paths = noise_free_data
    dataset = SpinImageDataset(paths["test"], img_res=RES, representation="parts6")
    name = part_map_name(str(dataset.annotations.imgname[1]))
    saved = Image.open(out / name).copy()
    (out / name).unlink()
    try:
        with pytest.raises(UserError, match="representation=rgb"):
            dataset.item(1, AugmentParams())
    finally:
        saved.save(out / name)


def test_display_image_of_a_part_input_is_rgb(noise_free_data):
    _, paths = noise_free_data
    dataset = SpinImageDataset(paths["test"], img_res=RES, representation="parts12")
    shown = dataset.display_image(dataset.item(0, AugmentParams())["img"])
    assert shown.shape == (3, RES, RES) and torch.isfinite(shown).all()
