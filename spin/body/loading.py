"""Read SMPL model files (.pkl, including the official chumpy pickles, or .npz) into checked numpy arrays.

The official SMPL pickles were written with chumpy objects inside. chumpy is unmaintained and does
not install on current Python/numpy, so the unpickler maps every chumpy class to a stand-in that
keeps only the array chumpy stored in its state (``x``). Sparse matrices (the official
``J_regressor`` is a scipy ``csc_matrix``) are densified.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spin.errors import UserError

NUM_VERTICES = 6890
NUM_JOINTS = 24
NUM_POSE_BASIS = 207
NUM_EXTRA_JOINTS = 9

# Arrays smplx's SMPL class reads from the file, with their required shapes (None: any size).
REQUIRED_KEYS: dict[str, tuple[int | None, ...]] = {
    "v_template": (NUM_VERTICES, 3),
    "shapedirs": (NUM_VERTICES, 3, None),
    "posedirs": (NUM_VERTICES, 3, NUM_POSE_BASIS),
    "J_regressor": (NUM_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
    "f": (None, 3),
}
EXTRA_REGRESSOR_KEY = "J_regressor_extra"


class _ChumpyStandIn:
    """Takes the place of any chumpy class while unpickling; keeps the array chumpy stored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: Any = None
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_array(self) -> np.ndarray | None:
        # Old pickles may rebuild the object without calling __init__, so read attributes defensively.
        state = getattr(self, "state", None)
        if state is None:
            state = self.__dict__
        if isinstance(state, tuple) and state and isinstance(state[-1], dict):
            state = state[-1]
        if isinstance(state, dict) and "x" in state:
            return np.asarray(state["x"])
        args = getattr(self, "args", ())
        if args and isinstance(args[0], np.ndarray):
            return args[0]
        return None


class _BodyModelUnpickler(pickle.Unpickler):
    """Unpickler for SMPL files: chumpy -> stand-in, old numpy/scipy module paths -> current ones."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStandIn
        if module.startswith("scipy.sparse"):
            import scipy.sparse

            if hasattr(scipy.sparse, name):
                return getattr(scipy.sparse, name)
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core") :]
        return super().find_class(module, name)


def _to_plain(value: Any) -> Any:
    """Stand-ins -> arrays, sparse matrices -> dense arrays; anything else unchanged."""
    if isinstance(value, _ChumpyStandIn):
        return value.to_array()
    if hasattr(value, "toarray") and "scipy.sparse" in type(value).__module__:
        return np.asarray(value.toarray())
    return value


@dataclass
class BodyModelArrays:
    """The arrays of one SMPL-layout body model, checked and dense.

    v_template (6890, 3), shapedirs (6890, 3, K), posedirs (6890, 3, 207), J_regressor (24, 6890),
    weights (6890, 24), kintree_table (2, 24), f (F, 3) int64, J_regressor_extra (9, 6890) or None.
    """

    path: Path
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    J_regressor: np.ndarray
    weights: np.ndarray
    kintree_table: np.ndarray
    f: np.ndarray
    J_regressor_extra: np.ndarray | None = None
    synthetic: bool = False

    @property
    def parents(self) -> np.ndarray:
        """(24,) int64 parent of each joint, -1 for the root."""
        parents = self.kintree_table[0].astype(np.int64)
        parents[0] = -1
        return parents

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays under SMPL's file keys (J_regressor_extra only when present)."""
        out = {k: getattr(self, k) for k in REQUIRED_KEYS}
        if self.J_regressor_extra is not None:
            out[EXTRA_REGRESSOR_KEY] = self.J_regressor_extra
        return out


def _read_raw(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise UserError(f"Body model file {path} does not exist; pass the path of an SMPL .pkl or .npz file.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if suffix == ".pkl":
            with open(path, "rb") as fh:
                raw = _BodyModelUnpickler(fh, encoding="latin1").load()
        else:
            raise UserError(f"Body model file {path} must end in .pkl or .npz.")
    except UserError:
        raise
    except Exception as exc:  # any unpickling / zip error means "not a readable body model"
        raise UserError(
            f"Body model file {path} could not be read as an SMPL model ({type(exc).__name__})."
        ) from exc
    if not isinstance(raw, dict):
        raise UserError(f"Body model file {path} holds a {type(raw).__name__}, not an SMPL model dictionary.")
    return raw


def _check_shape(path: Path, key: str, arr: np.ndarray, shape: tuple[int | None, ...]) -> None:
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape, strict=True))
    if not ok:
        want = "(" + ", ".join("K" if s is None else str(s) for s in shape) + ")"
        raise UserError(
            f"Body model file {path}: array '{key}' has shape {tuple(arr.shape)}, "
            f"expected {want} (SMPL layout)."
        )


def load_extra_regressor(path: str | Path) -> np.ndarray:
    """Read SPIN's J_regressor_extra (.npy, (9, 6890)) as float64."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"Extra joint regressor {path} does not exist; pass SPIN's J_regressor_extra.npy.")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise UserError(
            f"Extra joint regressor {path} is not a readable .npy array ({type(exc).__name__})."
        ) from exc
    _check_shape(path, EXTRA_REGRESSOR_KEY, np.asarray(arr), (NUM_EXTRA_JOINTS, NUM_VERTICES))
    return _finite(path, EXTRA_REGRESSOR_KEY, np.asarray(arr, dtype=np.float64))


def _finite(path: Path, key: str, arr: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise UserError(f"Body model file {path}: array '{key}' contains NaN or Inf values.")
    return arr


def load_body_arrays(path: str | Path, joint_regressor_extra: str | Path | None = None) -> BodyModelArrays:
    """Read and check an SMPL-layout model file (.pkl or .npz).

    ``joint_regressor_extra`` (a .npy path) overrides a ``J_regressor_extra`` stored in the file.
    Raises UserError naming the file and the problem for a missing file, a file that is not a body
    model, or arrays of the wrong shape.
    """
    path = Path(path)
    if path.is_dir():  # a smplx / SPIN model folder: its neutral model and its extra regressor
        from spin.body.folders import scan_body_folder

        contents = scan_body_folder(path)
        path = contents.neutral
        joint_regressor_extra = joint_regressor_extra or contents.extras.get("joint_regressor_extra")
    raw = _read_raw(path)
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise UserError(
            f"Body model file {path} is not an SMPL model: it lacks {', '.join(repr(k) for k in missing)}."
        )
    arrays: dict[str, np.ndarray] = {}
    for key, shape in REQUIRED_KEYS.items():
        value = _to_plain(raw[key])
        if value is None:
            raise UserError(f"Body model file {path}: '{key}' is a chumpy expression without a stored array.")
        try:
            arr = np.asarray(value)
            if key in ("kintree_table", "f"):
                arr = arr.astype(np.int64)
            else:
                arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise UserError(f"Body model file {path}: '{key}' is not a numeric array.") from exc
        _check_shape(path, key, arr, shape)
        arrays[key] = _finite(path, key, arr)
    if arrays["shapedirs"].shape[-1] < 1:
        raise UserError(f"Body model file {path}: 'shapedirs' has no shape components.")
    f = arrays["f"]
    if f.size and (f.min() < 0 or f.max() >= NUM_VERTICES):
        raise UserError(f"Body model file {path}: faces 'f' index vertices outside 0..{NUM_VERTICES - 1}.")
    parents = arrays["kintree_table"][0].copy()
    parents[0] = -1
    if np.any(parents[1:] < 0) or np.any(parents[1:] >= np.arange(1, NUM_JOINTS)):
        raise UserError(
            f"Body model file {path}: 'kintree_table' is not a kinematic tree with parents before children."
        )

    extra = None
    if joint_regressor_extra is not None:
        extra = load_extra_regressor(joint_regressor_extra)
    elif EXTRA_REGRESSOR_KEY in raw:
        extra = np.asarray(_to_plain(raw[EXTRA_REGRESSOR_KEY]), dtype=np.float64)
        _check_shape(path, EXTRA_REGRESSOR_KEY, extra, (NUM_EXTRA_JOINTS, NUM_VERTICES))
        extra = _finite(path, EXTRA_REGRESSOR_KEY, extra)
    return BodyModelArrays(path=path, J_regressor_extra=extra, synthetic="spin_synthetic" in raw, **arrays)


def save_body_npz(arrays: BodyModelArrays, out: str | Path, force: bool = False) -> Path:
    """Write the arrays as an uncompressed .npz under SMPL's keys (J_regressor_extra included if present).

    The file appears complete or not at all (temporary name + rename); an existing file is kept
    unless ``force``.
    """
    from spin.atomic_io import atomic_output, check_new_output

    out = check_new_output(out, force, "Output file")
    if out.suffix.lower() != ".npz":
        raise UserError(f"Output file {out} must end in .npz.")
    data = arrays.as_dict()
    if arrays.synthetic:
        data["spin_synthetic"] = np.array(True)
    with atomic_output(out) as tmp:
        np.savez(tmp, **data)
    return out
