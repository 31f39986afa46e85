"""Shared fixtures of the data tests: the synthetic body model and tiny rendered datasets."""

from __future__ import annotations

import pytest
import torch

from spin.data.synthetic import SynthConfig, synthesize_dataset

NOISE_FREE = SynthConfig(keypoint_noise_px=0.0, occlusion_prob=0.0)


@pytest.fixture(scope="session")
def body():
    torch.set_num_threads(1)
    from spin.body import BodyModel

    return BodyModel.default()


@pytest.fixture(scope="session")
def noise_free_data(body, tmp_path_factory):
    """A tiny noise-free synthetic dataset (96 px): keypoints are exact projections of the ground truth."""
    out = tmp_path_factory.mktemp("noise_free")
    paths = synthesize_dataset(out, body, n_train=10, n_test=4, image_size=96, seed=3, gt_fraction=0.5,
                               config=NOISE_FREE, progress=False)
    return out, paths
