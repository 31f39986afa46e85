"""Torch datasets over SPIN-format annotations: person crops with SPIN's augmentation, and a mixture.

`SpinImageDataset` reads a SPIN `.npz` (`spin.data.spin_format.load_spin_npz`) and its images from a
folder or from an HDF5 pack (`spin.data.h5pack`), crops each person box to the network resolution
with the sample's augmentation, and returns the item dict of the data ↔ trainer contract:

=================  ==========================================================================
`img`              (3, R, R) float32, ImageNet-normalised, augmented crop; for a non-RGB
                   `representation` (C, R, R) float32 in [0, 1] (NBF's silhouette, part or
                   heatmap channels of `spin.data.representations`), same crop and keypoints
`keypoints`        (49, 3) float32 augmented keypoints, x/y normalised to [−1, 1] (2·x/R − 1), conf
`keypoints_crop`   (49, 3) float32 CANONICAL (no augmentation) 224-px crop pixels, for SMPLify
`pose`, `betas`    (72,), (10,) float32 GT SMPL in the augmented frame (zeros when absent)
`has_smpl`         bool tensor
`pose_3d`          (24, 4) float32 GT 3D joints + confidence, camera frame as stored (not
                   pelvis-centred; losses centre them), rotated/mirrored by the augmentation;
                   zeros when absent
`has_pose_3d`      bool tensor (the file has `S` and the row has a confident joint)
`key`              str `<dataset name>/<row index>`
`sample_index`     int64 tensor: the row index in this dataset (the number in `key`)
`flip`, `rot`,     bool, float32 (degrees), float32 (box scale factor) tensors: the augmentation
`scale`            drawn for this item (identity when the dataset does not augment)
=================  ==========================================================================

Augmentation is drawn from numpy's global generator, as SPIN's loader does; wrap the dataset in
`spin.training.sampler.SeededDraws` for per-draw reproducibility, or call `item(i, params)`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from spin.camera import CROP_RES
from spin.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_pixel_noise,
    augment_joints3d,
    augment_keypoints,
    augment_pose,
    crop_image,
    sample_augmentation,
)
from spin.data.h5pack import ImagePack, is_image_pack
from spin.data.representations import (
    IMAGE_REPRESENTATIONS,
    check_representation,
    crop_part_map,
    decode_part_map,
    part_map_name,
    representation_input,
    textured_image,
)
from spin.data.spin_format import SpinAnnotations, load_spin_npz
from spin.errors import UserError

SMPLIFY_RES = CROP_RES  # keypoints_crop are in SPIN's crop camera, where SMPLify fits
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class SpinImageDataset(Dataset):
    """Person crops and labels of one SPIN-format dataset.

    annotations: a SPIN `.npz` path (or already loaded `SpinAnnotations`); images: the folder the
    `imgname` paths are relative to, or an image pack `.h5` (default: the `.npz`'s folder); name:
    the dataset name used in keys (default: the `.npz` file stem); img_res: network input size R;
    augment: SPIN's augmentation distribution, None for none (evaluation); representation: what `img`
    holds (`rgb`, or one of NBF's that need the `<stem>_parts.png` label map beside each image, as
    the synthetic renderer writes).
    """

    def __init__(self, annotations: str | Path | SpinAnnotations, images: str | Path | None = None,
                 name: str | None = None, img_res: int = CROP_RES, augment: AugmentConfig | None = None,
                 representation: str = "rgb"):
        self.annotations = (annotations if isinstance(annotations, SpinAnnotations)
                            else load_spin_npz(annotations, img_res=SMPLIFY_RES))
        self.name = name or self.annotations.path.stem
        if "/" in self.name:
            raise UserError(f"Dataset name '{self.name}' contains '/'; keys are '<name>/<index>', "
                            "pick another.")
        self.img_res = int(img_res)
        self.augment = augment
        self.representation = check_representation(representation)
        self.images_path = Path(images) if images is not None else self.annotations.path.parent
        self.pack: ImagePack | None = None
        if self.images_path.is_file() and is_image_pack(self.images_path):
            self.pack = ImagePack(self.images_path)
            absent = [str(n) for n in self.annotations.imgname if str(n) not in self.pack]
            if absent:
                raise UserError(f"Image pack {self.images_path} lacks {len(absent)} images of "
                                f"{self.annotations.path} (first: {absent[0]}); pack this dataset with "
                                "`spin data pack`.")
        elif not self.images_path.is_dir():
            raise UserError(f"Images of {self.annotations.path.name}: {self.images_path} is neither a folder "
                            "nor an image pack; pass the image folder or the .h5 from `spin data pack`.")
        n = len(self.annotations)
        self._pose = (self.annotations.pose if self.annotations.pose is not None
                      else np.zeros((n, 72), np.float32))
        self._betas = (self.annotations.betas if self.annotations.betas is not None
                       else np.zeros((n, 10), np.float32))
        self._S = self.annotations.S
        self._has_pose_3d = (self._S[..., 3] > 0).any(axis=1) if self._S is not None else np.zeros(n, bool)

    def __len__(self) -> int:
        return len(self.annotations)

    def key(self, index: int) -> str:
        """The fits-store key of row `index`: `<dataset name>/<index>`."""
        return f"{self.name}/{int(index)}"

    def load_image(self, index: int) -> Image.Image:
        """The full RGB image of row `index` (from the folder or the pack)."""
        name = str(self.annotations.imgname[index])
        if self.pack is not None:
            return Image.open(io.BytesIO(self.pack.read(name))).convert("RGB")
        path = self.images_path / name
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except FileNotFoundError:
            raise UserError(f"Image {path} (row {index} of {self.annotations.path.name}) does not exist; "
                            "pass the folder its imgname paths are relative to.") from None
        except (OSError, SyntaxError, Image.DecompressionBombError) as err:  # truncated, corrupt, other
            raise UserError(f"Image {path} (row {index} of {self.annotations.path.name}) is damaged or "
                            f"not an image ({type(err).__name__}); replace it or drop the row.") from None

    def load_part_map(self, index: int) -> np.ndarray:
        """The 24-part label map (H,W) int8 (−1 background) of row `index`'s image."""
        name = part_map_name(str(self.annotations.imgname[index]))
        try:
            if self.pack is not None:
                return decode_part_map(Image.open(io.BytesIO(self.pack.read(name))))
            with Image.open(self.images_path / name) as image:
                return decode_part_map(image)
        except (FileNotFoundError, KeyError):
            raise UserError(f"Part map {name} (row {index} of {self.annotations.path.name}) does not exist, "
                            f"so representation {self.representation!r} cannot be built; regenerate the "
                            "synthetic data (`spin data synth`) or set data.synthetic.representation=rgb."
                            ) from None

    def display_image(self, img: torch.Tensor) -> torch.Tensor:
        """An item's `img` (C,R,R) as an ImageNet-normalised RGB crop (3,R,R) for overlays: itself for
        rgb; otherwise each pixel's strongest channel as a grey level (a part map shows its parts)."""
        if self.representation in IMAGE_REPRESENTATIONS:
            return img
        strongest = img.float().argmax(0) + 1
        grey = torch.where(img.float().amax(0) > 0, strongest / img.shape[0], torch.zeros(()))
        rgb = grey[..., None].expand(-1, -1, 3).numpy()
        return torch.from_numpy(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).astype(np.float32))

    def __getitem__(self, index: int) -> dict:
        params = sample_augmentation(self.augment) if self.augment is not None else AugmentParams()
        return self.item(index, params)

    def item(self, index: int, params: AugmentParams) -> dict:
        """Row `index` with the given augmentation (see the module docstring for the fields)."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset '{self.name}' of {len(self)} rows")
        ann = self.annotations
        res = self.img_res
        canonical = ann.keypoints[index]  # (49, 3) in the 224 crop
        at_res = canonical.copy()
        at_res[:, :2] *= res / SMPLIFY_RES
        keypoints = augment_keypoints(at_res[None], params.flip, params.rot_deg, params.scale, res)[0]
        box_scale = float(ann.scale[index]) * params.scale
        if self.representation in IMAGE_REPRESENTATIONS:
            crop = crop_image(self.load_image(index), ann.center[index], box_scale, res, params.rot_deg,
                              params.flip)
            if self.representation == "textured":  # the row's clothes and clutter, whatever the crop
                parts = crop_part_map(self.load_part_map(index), ann.center[index], box_scale, res,
                                      params.rot_deg, params.flip)
                crop = textured_image(crop, parts, seed=index)
            img = apply_pixel_noise(crop, params.pixel_noise) / 255.0
            img = ((img - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
        else:
            # Labels and heatmaps are exact: no pixel noise, no ImageNet statistics.
            parts = crop_part_map(self.load_part_map(index), ann.center[index], box_scale, res,
                                  params.rot_deg, params.flip)
            img = representation_input(self.representation, None, parts, keypoints)
        keypoints[:, :2] = 2.0 * keypoints[:, :2] / res - 1.0

        has_smpl = bool(ann.has_smpl[index])
        pose = np.zeros(72, np.float32)
        betas = np.zeros(10, np.float32)
        if has_smpl:
            pose = augment_pose(self._pose[index][None], params.flip, params.rot_deg)[0]
            betas = self._betas[index].copy()
        has_pose_3d = bool(self._has_pose_3d[index])
        pose_3d = np.zeros((24, 4), np.float32)
        if has_pose_3d:
            pose_3d = augment_joints3d(self._S[index][None], params.flip, params.rot_deg)[0]
        return {
            "img": torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)),
            "keypoints": torch.from_numpy(keypoints.astype(np.float32)),
            "keypoints_crop": torch.from_numpy(canonical.astype(np.float32).copy()),
            "pose": torch.from_numpy(pose.astype(np.float32)),
            "betas": torch.from_numpy(betas.astype(np.float32)),
            "has_smpl": torch.tensor(has_smpl),
            "pose_3d": torch.from_numpy(pose_3d.astype(np.float32)),
            "has_pose_3d": torch.tensor(has_pose_3d),
            "key": self.key(index),
            "sample_index": torch.tensor(index, dtype=torch.int64),
            "flip": torch.tensor(bool(params.flip)),
            "rot": torch.tensor(float(params.rot_deg), dtype=torch.float32),
            "scale": torch.tensor(float(params.scale), dtype=torch.float32),
        }


class MixedDataset(Dataset):
    """Several datasets behind one global index, with per-dataset sampling ratios.

    Global index g maps to (dataset position d, row r) by concatenation in the given order
    (`locate`); the item is `datasets[d][r]` unchanged, so its `key` stays `<name>/<r>`.
    `sample_weights()` gives each row the weight ratio_d / len_d (normalised), so a weighted
    sampler draws dataset d with probability ratio_d / Σ ratio — SPIN's mixed batches.
    """

    def __init__(self, datasets: Sequence[SpinImageDataset], ratios: Sequence[float] | None = None):
        if not datasets:
            raise UserError("MixedDataset needs at least one dataset.")
        names = [d.name for d in datasets]
        if len(set(names)) != len(names):
            raise UserError(f"Dataset names {names} repeat; keys '<name>/<index>' would collide, rename one.")
        ratios = [1.0] * len(datasets) if ratios is None else [float(r) for r in ratios]
        if len(ratios) != len(datasets) or any(r < 0 for r in ratios) or sum(ratios) <= 0:
            raise UserError(f"Dataset ratios {ratios} must be {len(datasets)} non-negative numbers, "
                            "not all 0.")
        if any(len(d) == 0 and r > 0 for d, r in zip(datasets, ratios, strict=True)):
            raise UserError("A dataset with a positive sampling ratio is empty.")
        self.datasets = list(datasets)
        self.ratios = np.asarray(ratios, dtype=np.float64) / sum(ratios)
        self.lengths = np.array([len(d) for d in datasets], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global index -> (dataset position, row in that dataset)."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixed dataset of {len(self)} rows")
        position = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return position, index - int(self.offsets[position])

    def __getitem__(self, index: int) -> dict:
        position, row = self.locate(index)
        return self.datasets[position][row]

    def sample_weights(self) -> np.ndarray:
        """(N,) float64 per-row sampling weights summing to 1 (dataset d's rows share ratio_d)."""
        per_row = np.where(self.lengths > 0, self.ratios / np.maximum(self.lengths, 1), 0.0)
        return np.repeat(per_row, self.lengths)
