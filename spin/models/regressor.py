"""HMR-style regressor with SPIN's iterative error feedback in the 6D rotation space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spin.geometry import rot6d_to_matrix
from spin.models.backbone import ResNetEncoder

NUM_JOINTS = 24
POSE_6D = NUM_JOINTS * 6


@dataclass
class ModelConfig:
    """Regressor architecture. SPIN: resnet50 at 224 px, 3 iterations, hidden 1024, dropout 0.5."""

    backbone: str = "resnet50"
    pretrained: str | None = None  # local torchvision ImageNet state dict; never downloaded
    img_res: int = 224  # network input side in pixels
    iterations: int = 3
    hidden: int = 1024
    dropout: float = 0.5
    head_init_gain: float = 0.01  # SPIN's xavier gain on the residual heads: start near the mean
    init_checkpoint: str | None = None  # fine-tune from this project's or SPIN's checkpoint (weights only)
    # Input channels: 3 for RGB; set from data.synthetic.representation by TrainConfig (NBF's
    # silhouettes, part maps and heatmaps have 1–24), the backbone's first conv follows it.
    in_channels: int = 3


@dataclass
class RegressorOutput:
    """Network prediction. rotmat (B,24,3,3), betas (B,10), cam (B,3) weak perspective (s, tx, ty).

    rotmat_iters (T,B,24,3,3) / betas_iters (T,B,10): every IEF iteration's estimate (the last is
    rotmat / betas), for HMR's adversarial prior; None unless the forward was asked for them.
    """

    rotmat: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    rotmat_iters: torch.Tensor | None = None
    betas_iters: torch.Tensor | None = None


class Regressor(nn.Module):
    """Image crop (B,3,R,R) → SMPL rotations, betas and weak-perspective camera.

    As SPIN's HMR: pooled backbone feature concatenated with the current estimate (24·6 pose,
    10 betas, 3 camera) → FC → dropout → FC → dropout → residual heads, iterated from the mean
    parameters. (SPIN's FC layers have no non-linearity between them; kept as published.)
    """

    def __init__(self, config: ModelConfig, mean_params: dict[str, np.ndarray]):
        super().__init__()
        self.config = config
        self.encoder = ResNetEncoder(config.backbone, config.pretrained, in_channels=config.in_channels)
        width = self.encoder.num_features + POSE_6D + 10 + 3
        self.fc1 = nn.Linear(width, config.hidden)
        self.drop1 = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(config.hidden, config.hidden)
        self.drop2 = nn.Dropout(config.dropout)
        self.dec_pose = nn.Linear(config.hidden, POSE_6D)
        self.dec_betas = nn.Linear(config.hidden, 10)
        self.dec_cam = nn.Linear(config.hidden, 3)
        for head in (self.dec_pose, self.dec_betas, self.dec_cam):
            nn.init.xavier_uniform_(head.weight, gain=config.head_init_gain)
        self.register_buffer("init_pose", _as_row(mean_params["pose"], POSE_6D))
        self.register_buffer("init_betas", _as_row(mean_params["shape"], 10))
        self.register_buffer("init_cam", _as_row(mean_params["cam"], 3))

    def forward(self, images: torch.Tensor, return_iterations: bool = False) -> RegressorOutput:
        """images (B,C,R,R) → RegressorOutput (rotmat (B,24,3,3), betas (B,10), cam (B,3)).

        return_iterations: also fill rotmat_iters / betas_iters (one Gram–Schmidt over all T·B
        estimates; off by default so SPIN's runs pay nothing for it).
        """
        features = self.encoder(images)
        batch = features.shape[0]
        pose = self.init_pose.expand(batch, -1)
        betas = self.init_betas.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        poses, betas_all = [], []
        for _ in range(self.config.iterations):
            dtype = features.dtype
            x = torch.cat([features, pose.to(dtype), betas.to(dtype), cam.to(dtype)], 1)
            x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
            pose = self.dec_pose(x) + pose
            betas = self.dec_betas(x) + betas
            cam = self.dec_cam(x) + cam
            if return_iterations:
                poses.append(pose)
                betas_all.append(betas)
        # Rotations in float32: Gram–Schmidt under half precision loses orthogonality.
        if not return_iterations:
            rotmat = rot6d_to_matrix(pose.float().reshape(batch, NUM_JOINTS, 6))
            return RegressorOutput(rotmat=rotmat, betas=betas.float(), cam=cam.float())
        steps = len(poses)
        rotmat_iters = rot6d_to_matrix(torch.stack(poses).float().reshape(steps * batch, NUM_JOINTS, 6))
        rotmat_iters = rotmat_iters.reshape(steps, batch, NUM_JOINTS, 3, 3)
        betas_iters = torch.stack(betas_all).float()
        return RegressorOutput(rotmat=rotmat_iters[-1], betas=betas_iters[-1], cam=cam.float(),
                               rotmat_iters=rotmat_iters, betas_iters=betas_iters)


def _as_row(values: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    row = torch.as_tensor(np.asarray(values, dtype=np.float32)).reshape(1, -1)
    if row.shape[1] != size:
        raise ValueError(f"mean parameter of size {row.shape[1]}, expected {size}")
    return row


def build_regressor(config: ModelConfig, mean_params: dict[str, np.ndarray]) -> Regressor:
    """The regressor of `config`, initialised at the mean parameters (`load_mean_params` layout)."""
    return Regressor(config, mean_params)
