"""Shared fixtures of the trainer tests: the synthetic body model and a tiny synthetic dataset."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def body_files():
    from spin.body import resolve_body_files

    return resolve_body_files()


@pytest.fixture(scope="session")
def body(body_files):
    from spin.body import BodyModel

    torch.set_num_threads(1)
    return BodyModel.from_files(body_files)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, body):
    """12 train + 4 test people at 64 px, all with ground-truth SMPL: {"train": npz, "test": npz}."""
    from spin.data.synthetic import synthesize_dataset

    out = tmp_path_factory.mktemp("tiny_synth")
    return synthesize_dataset(out, body, n_train=12, n_test=4, image_size=64, seed=3, gt_fraction=1.0,
                              progress=False)


@pytest.fixture(scope="session")
def half_gt_data(tmp_path_factory, body):
    """Two tiny synthetic datasets (16 + 10 train rows, 4 test) where half the rows keep GT SMPL."""
    from spin.data.synthetic import synthesize_dataset

    first = synthesize_dataset(tmp_path_factory.mktemp("half_a"), body, n_train=16, n_test=4, image_size=64,
                               seed=5, gt_fraction=0.5, progress=False)
    second = synthesize_dataset(tmp_path_factory.mktemp("half_b"), body, n_train=10, n_test=0, image_size=64,
                                seed=6, gt_fraction=0.5, progress=False)
    return {"a": first["train"], "b": second["train"], "test": first["test"]}


@pytest.fixture(scope="session")
def tiny_train_config():
    """Builder of tiny TrainConfigs (a fixture so tests need not import conftest)."""
    return _tiny_train_config


def _tiny_train_config(data, mode, run_dir, datasets=("a",), **extra):
    """A TrainConfig for a tiny CPU run on `half_gt_data` (extra: dotted overrides)."""
    from spin.config import TrainConfig
    from spin.config_loading import load_config

    overrides = [
        f'fitting.mode="{mode}"', "wandb.enabled=false", "model.backbone=resnet18", "model.img_res=32",
        "model.hidden=32", "data.source=files", "data.batch_size=4", "data.num_workers=0",
        "optim.lr=1e-4", 'optim.amp="off"', "rounds.num_rounds=1", "rounds.steps_per_round=4",
        "rounds.checkpoint_every=2", "rounds.eval_batch_size=8", "rounds.overlay_images=1",
        "fitting.smplify.iters_camera=2", "fitting.smplify.iters_body=3", "fitting.batch_size=8",
        f"run_dir={run_dir}",
        "data.train=[" + ",".join(f"{{name: {n}, annotations: '{data[n]}'}}" for n in datasets) + "]",
        f"data.test={{name: test, annotations: '{data['test']}'}}",
    ]
    overrides += [f"{k}={v}" for k, v in extra.items()]
    return load_config(TrainConfig, None, overrides)
