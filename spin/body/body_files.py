"""The file names of a body-model set and the paths of one set (no loading, no generation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL_FILE = "SMPL_NEUTRAL.pkl"
MALE_MODEL_FILE = "SMPL_MALE.pkl"
FEMALE_MODEL_FILE = "SMPL_FEMALE.pkl"
EXTRA_REGRESSOR_FILE = "J_regressor_extra.npy"
H36M_REGRESSOR_FILE = "J_regressor_h36m.npy"
PRIOR_FILE = "gmm_08.pkl"
MEAN_PARAMS_FILE = "smpl_mean_params.npz"


@dataclass
class BodyFiles:
    """Paths of one body-model set.

    ``joint_regressor_extra`` None: it travels inside the model file. ``joint_regressor_h36m``
    (17, 6890) and the gendered models are needed only by the evaluation protocols that use them.
    """

    model: Path
    joint_regressor_extra: Path | None
    prior: Path | None
    mean_params: Path | None
    joint_regressor_h36m: Path | None = None
    model_male: Path | None = None
    model_female: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path) -> BodyFiles:
        """The complete set under its usual file names in ``folder`` (as the synthetic set is written)."""
        return cls(
            model=folder / MODEL_FILE,
            joint_regressor_extra=folder / EXTRA_REGRESSOR_FILE,
            prior=folder / PRIOR_FILE,
            mean_params=folder / MEAN_PARAMS_FILE,
            joint_regressor_h36m=folder / H36M_REGRESSOR_FILE,
            model_male=folder / MALE_MODEL_FILE,
            model_female=folder / FEMALE_MODEL_FILE,
        )

    def gendered(self, gender: str) -> Path | None:
        """The model for SPIN's gender code: 'm' → male, 'f' → female, anything else → None."""
        return {"m": self.model_male, "f": self.model_female}.get(gender)
