"""SPIN's dataset `.npz` files: read them into 49 crop-pixel keypoints, write synthetic ones.

A file holds `imgname` (N,), `center` (N, 2), `scale` (N,) (box side = scale·200 pixels), and the
2D keypoints `part` (N, 24, 3) (ground truth, x/y/visibility) and/or `openpose` (N, 25, 3) (x/y/
confidence) in image pixels; optionally `pose` (N, 72), `shape` (N, 10), `has_smpl` (N,),
`S` (N, 24, 4) and `gender` (N,). As SPIN's loader does, a missing `part` or `openpose` counts as
all-zero (confidence 0); missing `pose`/`shape` means no SMPL ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spin.camera import CROP_RES
from spin.data.crop import to_crop
from spin.errors import UserError

NUM_OPENPOSE = 25
NUM_GT = 24

# key -> trailing shape after N; None entries are free-length (strings)
_FLOAT_KEYS: dict[str, tuple[int, ...]] = {
    "center": (2,),
    "scale": (),
    "part": (NUM_GT, 3),
    "openpose": (NUM_OPENPOSE, 3),
    "pose": (72,),
    "shape": (10,),
    "has_smpl": (),
    "S": (NUM_GT, 4),
}
_REQUIRED = ("imgname", "center", "scale")


@dataclass
class SpinAnnotations:
    """One SPIN-format dataset file, keypoints already in the img_res crop.

    keypoints `(N, 49, 3)`: the 25 OpenPose detections then the 24 ground-truth joints, x/y in crop
    pixels (float mapping of `spin.data.crop.to_crop`), confidence/visibility kept as stored.
    pose `(N, 72)` / betas `(N, 10)` are None when the file has no SMPL parameters; has_smpl `(N,)`
    says which rows carry them. S `(N, 24, 4)` 3D joints with confidence or None; gender `(N,)` or None.
    """

    path: Path
    imgname: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    keypoints: np.ndarray
    pose: np.ndarray | None
    betas: np.ndarray | None
    has_smpl: np.ndarray
    S: np.ndarray | None
    gender: np.ndarray | None

    def __len__(self) -> int:
        return len(self.imgname)


def _check_array(path: Path, key: str, value: np.ndarray, n: int) -> np.ndarray:
    """`value` as float32 with shape (n, *trailing) and finite entries, else a UserError naming the key."""
    expected = (n, *_FLOAT_KEYS[key])
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise UserError(f"{path}: key '{key}' is not numeric; store it as a float array of shape "
                        f"{_shape_text(expected)}.") from None
    if array.shape != expected:
        raise UserError(f"{path}: key '{key}' has shape {array.shape}, expected {_shape_text(expected)} "
                        f"(N = {n} images); fix the file.")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array.reshape(n, -1))).any(axis=1).sum()) if n else 0
        raise UserError(f"{path}: key '{key}' holds NaN/Inf values in {bad} of {n} rows; "
                        "replace them (e.g. zeros with confidence 0) before using the file.")
    return array


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as raw:
        data = {}
        for key in raw.files:
            try:
                data[key] = raw[key]
            except ValueError:
                # Some released SPIN files store imgname/gender as object arrays (pickled strings).
                with np.load(path, allow_pickle=True) as pickled:
                    data[key] = np.asarray(pickled[key])
    return data


def load_spin_npz(path: str | Path, img_res: int = CROP_RES) -> SpinAnnotations:
    """Read a SPIN dataset `.npz` into `SpinAnnotations` with keypoints in the img_res-pixel crop.

    Keypoints are mapped with the exact float crop transform T·p; SPIN's own loader uses
    int(T·p) + 1, i.e. whole pixels shifted by up to one pixel — fits made here are therefore
    comparable with each other, not bit-identical to SPIN's. Raises UserError naming the file and
    key for a missing file, a missing required key, wrong shapes, non-positive scales or NaN/Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Dataset file {path} does not exist; pass a SPIN-format .npz to --data.")
    try:
        data = _read_npz(path)
    except Exception as err:  # a corrupt or non-npz file is the user's to replace
        raise UserError(f"{path} is not a readable .npz file ({type(err).__name__}: {err}); "
                        "pass a SPIN-format dataset file.") from None
    for key in _REQUIRED:
        if key not in data:
            raise UserError(f"{path} has no '{key}' array; a SPIN dataset file needs imgname, center, scale "
                            "and part and/or openpose.")
    if "part" not in data and "openpose" not in data:
        raise UserError(f"{path} has neither 'part' nor 'openpose'; add the 2D keypoints of at least one.")
    imgname = np.asarray(data["imgname"])
    if imgname.ndim != 1:
        raise UserError(f"{path}: key 'imgname' has shape {imgname.shape}, expected (N,); fix the file.")
    n = len(imgname)
    center = _check_array(path, "center", data["center"], n)
    scale = _check_array(path, "scale", data["scale"], n)
    if (scale <= 0).any():
        raise UserError(f"{path}: key 'scale' has {(scale <= 0).sum()} non-positive entries; box scales "
                        "must be > 0 (side = scale·200 pixels).")
    part = (_check_array(path, "part", data["part"], n) if "part" in data
            else np.zeros((n, NUM_GT, 3), np.float32))
    openpose = (_check_array(path, "openpose", data["openpose"], n) if "openpose" in data
                else np.zeros((n, NUM_OPENPOSE, 3), np.float32))
    image_keypoints = np.concatenate([openpose, part], axis=1)
    keypoints = np.empty_like(image_keypoints)
    keypoints[..., :2] = to_crop(image_keypoints[..., :2], center, scale, img_res)
    keypoints[..., 2] = image_keypoints[..., 2]

    pose = betas = None
    if ("pose" in data) != ("shape" in data):
        present, missing = ("pose", "shape") if "pose" in data else ("shape", "pose")
        raise UserError(f"{path} has '{present}' but no '{missing}'; SMPL ground truth needs both.")
    if "pose" in data:
        pose = _check_array(path, "pose", data["pose"], n)
        betas = _check_array(path, "shape", data["shape"], n)
        has_smpl = (_check_array(path, "has_smpl", data["has_smpl"], n) > 0 if "has_smpl" in data
                    else np.ones(n, dtype=bool))
    else:
        has_smpl = np.zeros(n, dtype=bool)
    S = _check_array(path, "S", data["S"], n) if "S" in data else None
    gender = None
    if "gender" in data:
        gender = np.asarray(data["gender"])
        if gender.shape != (n,):
            raise UserError(f"{path}: key 'gender' has shape {gender.shape}, expected ({n},); fix the file.")
    return SpinAnnotations(path=path, imgname=imgname, center=center, scale=scale,
                           keypoints=keypoints.astype(np.float32), pose=pose, betas=betas,
                           has_smpl=has_smpl, S=S, gender=gender)


def save_spin_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Write a SPIN-format dataset `.npz` (image-pixel keypoints, SPIN's key names).

    Takes the keys of the format (imgname, center, scale, part, openpose, pose, shape, has_smpl, S,
    gender). Raises UserError for unknown keys, missing required ones, wrong shapes or NaN/Inf, so a
    written file always loads with `load_spin_npz`. Writes through a temporary file then renames.
    """
    path = Path(path)
    unknown = set(arrays) - set(_FLOAT_KEYS) - {"imgname", "gender"}
    if unknown:
        raise UserError(f"save_spin_npz({path}): unknown keys {sorted(unknown)}; use SPIN's key names.")
    for key in _REQUIRED:
        if key not in arrays:
            raise UserError(f"save_spin_npz({path}): '{key}' is required.")
    if "part" not in arrays and "openpose" not in arrays:
        raise UserError(f"save_spin_npz({path}): give 'part' and/or 'openpose' keypoints.")
    imgname = np.asarray(arrays["imgname"]).astype(str)
    if imgname.ndim != 1:
        raise UserError(f"save_spin_npz({path}): 'imgname' must have shape (N,), got {imgname.shape}.")
    n = len(imgname)
    out: dict[str, np.ndarray] = {"imgname": imgname}
    for key, value in arrays.items():
        if key in _FLOAT_KEYS:
            out[key] = _check_array(path, key, value, n)
    if "gender" in arrays:
        gender = np.asarray(arrays["gender"]).astype(str)
        if gender.shape != (n,):
            raise UserError(f"save_spin_npz({path}): 'gender' must have shape ({n},), got {gender.shape}.")
        out["gender"] = gender
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **out)
    tmp.replace(path)
