"""SMPL-layout body model with SPIN's 49 joints, its files, and the synthetic stand-in model."""

from spin.body.files import BodyFiles, load_mean_params, resolve_body_files
from spin.body.model import BodyModel, BodyOutput

__all__ = ["BodyFiles", "BodyModel", "BodyOutput", "load_mean_params", "resolve_body_files"]
