"""Which body-model files a run uses: the user's, or the synthetic set generated into the cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from spin.body.body_files import (
    EXTRA_REGRESSOR_FILE,
    FEMALE_MODEL_FILE,
    H36M_REGRESSOR_FILE,
    MALE_MODEL_FILE,
    MEAN_PARAMS_FILE,
    MODEL_FILE,
    PRIOR_FILE,
    BodyFiles,
)
from spin.errors import UserError
from spin.paths import cache_dir

_VERSION_FILE = "synthetic_version.txt"
_SYNTHETIC_SET = (MODEL_FILE, MALE_MODEL_FILE, FEMALE_MODEL_FILE, EXTRA_REGRESSOR_FILE,
                  H36M_REGRESSOR_FILE, PRIOR_FILE, MEAN_PARAMS_FILE, _VERSION_FILE)


def synthetic_dir(seed: int = 0) -> Path:
    """Where the synthetic set for ``seed`` lives in the cache."""
    return cache_dir() / f"synthetic_body_seed{seed}"


def _complete(folder: Path, version: str) -> bool:
    if not all((folder / n).is_file() for n in _SYNTHETIC_SET):
        return False
    return (folder / _VERSION_FILE).read_text().strip() == version


def ensure_synthetic_body(seed: int = 0) -> BodyFiles:
    """The synthetic set in the cache, generated on first use.

    Generation writes into a temporary folder beside the target and renames it into place, so
    readers never see a half-written set; when several processes race, the first rename wins and
    the others discard their copy. A set from an older generator version is replaced.
    """
    from spin.body.synthetic import SYNTHETIC_VERSION, synthesize_body

    version = str(SYNTHETIC_VERSION)
    target = synthetic_dir(seed)
    if _complete(target, version):
        return BodyFiles.in_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        synthesize_body(tmp, seed=seed)
        (tmp / _VERSION_FILE).write_text(version + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared by the user's processes
        if target.exists() and not _complete(target, version):
            # Stale or broken: move it aside atomically, then delete it.
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            try:
                os.rename(target, stale / "old")
            except OSError:
                pass  # another process moved or replaced it first
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target, version):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BodyFiles.in_folder(target)


def _existing(path: str | Path | None, what: str, flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{what} file {p} does not exist; check the path given to {flag}.")
    return p


def resolve_body_files(
    body_model: str | Path | None = None,
    joint_regressor_extra: str | Path | None = None,
    prior: str | Path | None = None,
    mean_params: str | Path | None = None,
    joint_regressor_h36m: str | Path | None = None,
) -> BodyFiles:
    """The files a run uses.

    No ``body_model``: the synthetic set (generated on first use), with its own extra regressor;
    given paths still override its prior / mean parameters. ``body_model`` a folder (smplx / SPIN
    layout, see ``spin.body.folders``): its neutral model, with the extras found in it by their
    usual names unless given. ``body_model`` a file: the extra regressor is the given one or the
    one inside the model file (the synthetic one would not fit a real mesh); gendered models and
    the H36M regressor beside it are picked up. A missing prior or mean-parameters file falls back
    to the synthetic set's (they do not depend on the mesh).
    """
    from spin.body.folders import gendered_siblings, scan_body_folder

    found: dict[str, Path] = {}
    if body_model is not None and Path(body_model).expanduser().is_dir():
        contents = scan_body_folder(body_model)
        model: Path | None = contents.neutral
        found = {**contents.extras, **{g: p for g, p in contents.models.items() if g != "neutral"}}
    else:
        model = _existing(body_model, "Body model", "--body-model")
        if model is not None:
            found = gendered_siblings(model)
    extra = _existing(joint_regressor_extra, "Extra joint regressor", "--joint-regressor-extra")
    h36m = _existing(joint_regressor_h36m, "H36M joint regressor", "--joint-regressor-h36m")
    prior_path = _existing(prior, "Pose prior", "--prior") or found.get("prior")
    mean_path = _existing(mean_params, "Mean parameters", "--mean-params") or found.get("mean_params")
    extra = extra or found.get("joint_regressor_extra")
    h36m = h36m or found.get("joint_regressor_h36m")
    synthetic = None
    if model is None or prior_path is None or mean_path is None:
        synthetic = ensure_synthetic_body(0)
    if model is None:
        return BodyFiles(
            model=synthetic.model,
            joint_regressor_extra=extra or synthetic.joint_regressor_extra,
            prior=prior_path or synthetic.prior,
            mean_params=mean_path or synthetic.mean_params,
            joint_regressor_h36m=h36m or synthetic.joint_regressor_h36m,
            model_male=synthetic.model_male,
            model_female=synthetic.model_female,
        )
    return BodyFiles(
        model=model,
        joint_regressor_extra=extra,
        prior=prior_path or synthetic.prior,
        mean_params=mean_path or synthetic.mean_params,
        joint_regressor_h36m=h36m,
        model_male=found.get("male"),
        model_female=found.get("female"),
    )


def load_mean_params(path: str | Path) -> dict[str, np.ndarray]:
    """SPIN's smpl_mean_params.npz: ``pose`` (144,) 6D, ``shape`` (10,), ``cam`` (3,), as float32."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Mean parameters file {path} does not exist; pass SPIN's smpl_mean_params.npz.")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("pose", "shape", "cam") if k not in data.files]
            if missing:
                raise UserError(
                    f"Mean parameters file {path} lacks the array '{missing[0]}'; "
                    "it needs pose, shape and cam."
                )
            out = {k: np.asarray(data[k], dtype=np.float32).reshape(-1) for k in ("pose", "shape", "cam")}
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"Mean parameters file {path} is not a readable .npz ({type(exc).__name__})."
        ) from exc
    for key, size in (("pose", 144), ("shape", 10), ("cam", 3)):
        if out[key].shape != (size,):
            raise UserError(
                f"Mean parameters file {path}: '{key}' has {out[key].size} numbers, expected {size}."
            )
        if not np.all(np.isfinite(out[key])):
            raise UserError(f"Mean parameters file {path}: '{key}' contains NaN or Inf.")
    return out
