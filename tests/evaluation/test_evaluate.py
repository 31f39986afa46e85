"""evaluate_model on a real test split: an oracle that predicts the ground truth scores ~0 mm, a
constant prediction does not; GT joints come from `S`, or from the GT mesh where `S` is absent."""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from spin.data.datasets import SpinImageDataset
from spin.evaluation.evaluate import evaluate_model
from spin.geometry import axis_angle_to_matrix
from spin.models import RegressorOutput


class _Oracle(nn.Module):
    """Returns the dataset's own ground truth, in loader order (shuffle off)."""

    def __init__(self, pose, betas, noise=0.0):
        super().__init__()
        self.pose, self.betas, self.noise, self.at = pose, betas, noise, 0

    def forward(self, images):
        n = images.shape[0]
        pose = torch.as_tensor(self.pose[self.at:self.at + n]).reshape(n, 24, 3)
        self.at += n
        pose = pose + self.noise * torch.randn_like(pose)
        betas = torch.as_tensor(self.betas[self.at - n:self.at])
        return RegressorOutput(rotmat=axis_angle_to_matrix(pose), betas=betas, cam=torch.ones(n, 3))


def test_oracle_scores_zero_and_noise_scores_more(test_split, body):
    dataset = SpinImageDataset(test_split, img_res=32)
    ann = dataset.annotations
    perfect = evaluate_model(_Oracle(ann.pose, ann.betas), body, DataLoader(dataset, batch_size=4))
    assert perfect.count == 6 and perfect.mpjpe < 0.01 and perfect.pa_mpjpe < 0.01 and perfect.pve < 0.01
    torch.manual_seed(0)
    noisy = evaluate_model(_Oracle(ann.pose, ann.betas, noise=0.2), body, DataLoader(dataset, batch_size=4))
    assert noisy.pa_mpjpe > 10 and noisy.mpjpe >= noisy.pa_mpjpe and noisy.pve > 10
    assert noisy.predictions["joints"].shape == (6, 49, 3) and len(noisy.predictions["key"]) == 6


def test_ground_truth_mesh_stands_in_for_missing_3d_joints(test_split, body):
    dataset = SpinImageDataset(test_split, img_res=32)
    dataset._has_pose_3d = np.zeros(len(dataset), bool)  # as a 3DPW-like file without S
    ann = dataset.annotations
    result = evaluate_model(_Oracle(ann.pose, ann.betas), body, DataLoader(dataset, batch_size=6))
    assert result.count == 6 and result.mpjpe < 0.01
