"""Fixtures of the end-to-end trainer tests: a tiny synthetic dataset and config builder."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(scope="session")
def e2e_data(tmp_path_factory):
    """20 train rows (a quarter with GT SMPL) and 6 test rows, 64-px images."""
    from spin.body import BodyModel
    from spin.data.synthetic import synthesize_dataset

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("e2e_synth")
    return synthesize_dataset(out, BodyModel.default(), n_train=20, n_test=6, image_size=64, seed=11,
                              gt_fraction=0.25, progress=False)


@pytest.fixture()
def local_ray_env(monkeypatch):
    """Make a Ray started by the code under test a fresh local one, never someone's running cluster."""
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    yield
    import ray

    assert not ray.is_initialized(), "the trainer left Ray running"


@pytest.fixture(scope="session")
def e2e_overrides():
    """Builder of the tiny run's overrides (a fixture so tests need not import conftest)."""
    return _e2e_overrides


@pytest.fixture(scope="session")
def run_env():
    """Builder of a training subprocess's environment."""
    return _run_env


def _e2e_overrides(data, run_dir, mode, **extra) -> list[str]:
    """key=value overrides of a tiny run on `e2e_data` (extra: more dotted overrides)."""
    values = {
        "fitting.mode": f'"{mode}"', "wandb.enabled": "false", "torch_threads": 1,
        "model.backbone": "resnet18", "model.img_res": 32, "model.hidden": 32,
        "data.source": "files", "data.batch_size": 4, "data.num_workers": 0,
        "optim.lr": 1e-4, "optim.amp": '"off"', "rounds.num_rounds": 2, "rounds.steps_per_round": 6,
        "rounds.checkpoint_every": 2, "rounds.eval_batch_size": 8, "rounds.overlay_images": 2,
        "fitting.num_actors": 2, "fitting.batch_size": 8, "fitting.smplify.iters_camera": 2,
        "fitting.smplify.iters_body": 4, "run_dir": str(run_dir),
        "data.train": f"[{{name: synth, annotations: '{data['train']}'}}]",
        "data.test": f"{{name: synth_test, annotations: '{data['test']}'}}",
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def _run_env() -> dict[str, str]:
    """Environment of a training subprocess: this one, one thread per library."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_ADDRESS="local")
    return env
