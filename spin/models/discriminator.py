"""HMR's factorised adversarial prior (Kanazawa et al. 2018): per-joint, whole-pose and shape discriminators.

The body pose (SMPL joints 1-23, global orientation excluded: any camera view is plausible) enters
as 23 rotation matrices. A shared embedding (two 1×1 convolutions 9 → 32 → 32, ReLU, i.e. the same
two FC layers for every joint) feeds 23 per-joint discriminators (32 → 1 each) and one whole-pose
discriminator on the concatenated embeddings (23·32 → 1024 → 1024 → 1). The shape discriminator
reads the 10 betas (10 → 5 → 1). That is K + 2 = 25 outputs, linear as in HMR's code: the
least-squares losses pull a real body's judgement to 1 and a prediction's to 0, so 0.5 decides.
A sigmoid on top (tried first) starts every judgement at 0.5 with a quarter of the gradient.
"""

from __future__ import annotations

import torch
from torch import nn

NUM_BODY_JOINTS = 23  # SMPL's joints without the root (global orientation)
NUM_BETAS = 10
NUM_OUTPUTS = NUM_BODY_JOINTS + 2  # per-joint + whole pose + shape
EMBED_WIDTH = 32
POSE_HIDDEN = 1024
SHAPE_HIDDEN = 5


class HMRDiscriminator(nn.Module):
    """(rotmats (B,23,3,3), betas (B,10)) → judgements (B,25), unbounded (1 = real, 0 = predicted).

    Output columns: 0-22 the per-joint discriminators (joint j + 1 of SMPL), 23 the whole pose,
    24 the shape.
    """

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Conv2d(9, EMBED_WIDTH, 1), nn.ReLU(inplace=True),
            nn.Conv2d(EMBED_WIDTH, EMBED_WIDTH, 1), nn.ReLU(inplace=True),
        )
        # 23 independent linear heads 32 → 1, held as one weight tensor (one einsum, no Python loop).
        self.joint_weight = nn.Parameter(torch.empty(NUM_BODY_JOINTS, EMBED_WIDTH))
        self.joint_bias = nn.Parameter(torch.zeros(NUM_BODY_JOINTS))
        nn.init.uniform_(self.joint_weight, -EMBED_WIDTH ** -0.5, EMBED_WIDTH ** -0.5)
        self.pose = nn.Sequential(
            nn.Linear(NUM_BODY_JOINTS * EMBED_WIDTH, POSE_HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(POSE_HIDDEN, POSE_HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(POSE_HIDDEN, 1),
        )
        self.shape = nn.Sequential(nn.Linear(NUM_BETAS, SHAPE_HIDDEN), nn.ReLU(inplace=True),
                                   nn.Linear(SHAPE_HIDDEN, 1))

    def forward(self, rotmats: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Judgements (B,25) of body rotations (B,23,3,3) and betas (B,10)."""
        batch = rotmats.shape[0]
        if rotmats.shape[1:] != (NUM_BODY_JOINTS, 3, 3) or betas.shape[1:] != (NUM_BETAS,):
            raise ValueError(f"discriminator expects rotmats (B,23,3,3) and betas (B,10), got "
                             f"{tuple(rotmats.shape)} and {tuple(betas.shape)}")
        # (B, 9, 23, 1): the 9 matrix entries as channels, joints along a spatial axis, so the
        # 1×1 convolutions apply the same embedding to every joint.
        x = rotmats.reshape(batch, NUM_BODY_JOINTS, 9).transpose(1, 2).unsqueeze(-1)
        embedded = self.embed(x).squeeze(-1).transpose(1, 2)  # (B, 23, 32)
        per_joint = torch.einsum("bjc,jc->bj", embedded, self.joint_weight) + self.joint_bias
        whole = self.pose(embedded.reshape(batch, -1))
        shape = self.shape(betas)
        return torch.cat([per_joint, whole, shape], dim=1)


def body_rotmats(rotmats: torch.Tensor) -> torch.Tensor:
    """The 23 body-joint rotations (B,23,3,3) of SMPL rotations (B,24,3,3) or (B,23,3,3)."""
    if rotmats.shape[-3] == NUM_BODY_JOINTS + 1:
        return rotmats[..., 1:, :, :]
    if rotmats.shape[-3] == NUM_BODY_JOINTS:
        return rotmats
    raise ValueError(f"expected 24 or 23 rotation matrices per body, got shape {tuple(rotmats.shape)}")
