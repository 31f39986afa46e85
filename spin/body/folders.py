"""Body-model folders as smplx and SPIN lay them out: which model files and extras a folder holds.

Accepted layouts (case-insensitive names, ``.pkl`` or ``.npz``), in the folder or its ``smpl/``
subfolder: ``SMPL_NEUTRAL`` / ``SMPL_MALE`` / ``SMPL_FEMALE`` (smplx, SPIN), and the official
download's ``basicmodel_neutral_lbs_10_207_0_v1.0.0`` / ``basicmodel_m_lbs_10_207_0_v1.1.0`` /
``basicmodel_f_...`` (any version). The extras (``J_regressor_extra.npy``, ``J_regressor_h36m.npy``,
``gmm_08.pkl``, ``smpl_mean_params.npz``) are looked up in the folder, beside the model files, and
in the folder's parent (SPIN's ``data/`` holds them next to ``data/smpl/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from spin.body.body_files import (
    EXTRA_REGRESSOR_FILE,
    H36M_REGRESSOR_FILE,
    MEAN_PARAMS_FILE,
    PRIOR_FILE,
)
from spin.errors import UserError

GENDERS = ("neutral", "male", "female")
_MODEL_PATTERNS = {
    "neutral": (r"smpl_neutral", r"basicmodel_neutral_lbs_10_207_0_v[\d.]+"),
    "male": (r"smpl_male", r"basicmodel_m_lbs_10_207_0_v[\d.]+"),
    "female": (r"smpl_female", r"basicmodel_f_lbs_10_207_0_v[\d.]+"),
}
_EXTRAS = {
    "joint_regressor_extra": EXTRA_REGRESSOR_FILE,
    "joint_regressor_h36m": H36M_REGRESSOR_FILE,
    "prior": PRIOR_FILE,
    "mean_params": MEAN_PARAMS_FILE,
}
SEARCHED_NAMES = (
    "SMPL_NEUTRAL.pkl/.npz or basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl, in the folder or its smpl/"
)


@dataclass
class FolderContents:
    """What one body-model folder holds: model file per gender, extras by role (absent: missing)."""

    folder: Path
    models: dict[str, Path] = field(default_factory=dict)
    extras: dict[str, Path] = field(default_factory=dict)

    @property
    def neutral(self) -> Path:
        """The neutral model, or a UserError that says what the folder holds instead."""
        if "neutral" in self.models:
            return self.models["neutral"]
        if self.models:
            found = ", ".join(f"{g}: {p.name}" for g, p in self.models.items())
            raise UserError(
                f"Body model folder {self.folder} has no neutral SMPL model ({found}); SPIN trains and "
                f"evaluates with the neutral one — add SMPL_NEUTRAL.pkl, or pass one model file itself."
            )
        raise UserError(
            f"Body model folder {self.folder} holds no SMPL model file (looked for {SEARCHED_NAMES}); "
            "pass the folder of the SMPL download (SPIN's data/smpl) or the .pkl/.npz file itself."
        )


def _model_candidates(folder: Path) -> list[Path]:
    out = []
    for place in (folder, folder / "smpl", folder / "SMPL"):
        if place.is_dir():
            files = (p for p in place.iterdir() if p.is_file() and p.suffix.lower() in (".pkl", ".npz"))
            out.extend(sorted(files))
    return out


def _match(path: Path, gender: str) -> bool:
    stem = path.stem.lower()
    return any(re.fullmatch(pattern, stem) for pattern in _MODEL_PATTERNS[gender])


def _pick(paths: list[Path]) -> Path:
    """The first of several matches, preferring .npz (no pickle) over .pkl and newer versions."""
    return sorted(paths, key=lambda p: (p.suffix.lower() != ".npz", [-ord(c) for c in p.stem.lower()]))[0]


def scan_body_folder(folder: str | Path) -> FolderContents:
    """The model files (per gender) and extras (per role) a folder holds; nothing required."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"Body model folder {folder} does not exist; check the path given to --body-model.")
    candidates = _model_candidates(folder)
    models = {}
    for gender in GENDERS:
        hits = [p for p in candidates if _match(p, gender)]
        if hits:
            models[gender] = _pick(hits)
    places = [folder] + sorted({p.parent for p in models.values()}) + [folder.parent]
    extras = {}
    for role, name in _EXTRAS.items():
        for place in places:
            if (place / name).is_file():
                extras[role] = place / name
                break
    return FolderContents(folder=folder, models=models, extras=extras)


def gendered_siblings(model: Path) -> dict[str, Path]:
    """Male/female models and the H36M regressor beside one model file (the protocols' extras)."""
    contents = scan_body_folder(model.parent)
    out = {g: p for g, p in contents.models.items() if g != "neutral"}
    if "joint_regressor_h36m" in contents.extras:
        out["joint_regressor_h36m"] = contents.extras["joint_regressor_h36m"]
    return out
