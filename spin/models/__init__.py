"""The regressor network: image crop → SMPL pose (rotation matrices), betas, weak-perspective camera."""

from spin.models.backbone import BACKBONE_FEATURES, ResNetEncoder, load_imagenet_weights
from spin.models.checkpoints import LoadedRegressor, load_regressor, read_regressor
from spin.models.regressor import ModelConfig, Regressor, RegressorOutput, build_regressor

__all__ = [
    "BACKBONE_FEATURES",
    "LoadedRegressor",
    "ModelConfig",
    "Regressor",
    "RegressorOutput",
    "ResNetEncoder",
    "build_regressor",
    "load_imagenet_weights",
    "load_regressor",
    "read_regressor",
]
