"""The shipped configs load into TrainConfig; bad values and misuse of run folders are UserErrors."""

from dataclasses import asdict
from pathlib import Path

import pytest

from spin.config import TrainConfig, config_from_dict
from spin.config_loading import load_config
from spin.errors import UserError
from spin.training.rounds import load_rounds
from spin.training.trainer import Trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["default.yaml", "spin_paper.yaml", "cluster.yaml"])
def test_shipped_configs_load(name):
    config = load_config(TrainConfig, CONFIGS / name, [])
    assert config.fitting.mode in ("off", "sync", "async")
    assert config_from_dict(asdict(config)) == config


def test_paper_config_carries_spins_values():
    config = load_config(TrainConfig, CONFIGS / "spin_paper.yaml", [])
    assert (config.model.backbone, config.model.img_res, config.data.batch_size, config.optim.lr) == (
        "resnet50", 224, 64, 5e-5)
    weights = config.losses
    assert (weights.keypoint_weight, weights.pose_weight, weights.beta_weight, weights.openpose_weight,
            weights.gt_weight, weights.scale) == (5.0, 1.0, 0.001, 0.0, 1.0, 60.0)
    assert config.fitting.smplify.threshold == 100.0 and config.fitting.smplify.iters_body == 100
    assert abs(sum(spec.ratio for spec in config.data.train) - 1.0) < 0.01


def test_default_config_is_the_small_async_cpu_run():
    config = load_config(TrainConfig, CONFIGS / "default.yaml", [])
    assert config.data.source == "synthetic" and config.fitting.mode == "async"
    assert config.fitting.num_actors == 2 and config.rounds.num_rounds == 3
    assert config.model.backbone == "resnet18"


@pytest.mark.parametrize("override", ["optim.amp=fp8", "data.batch_size=0", "rounds.num_rounds=0",
                                      "optim.schedule=linear", "data.source=web"])
def test_invalid_values_are_user_errors(override):
    with pytest.raises(UserError):
        load_config(TrainConfig, CONFIGS / "default.yaml", [override])


def test_files_source_needs_datasets():
    with pytest.raises(UserError, match="data.train"):
        load_config(TrainConfig, None, ["data.source=files"])


def test_run_folders_are_not_overwritten_and_resume_needs_a_checkpoint(tmp_path):
    config = load_config(TrainConfig, CONFIGS / "default.yaml", ["wandb.enabled=false"])
    with pytest.raises(UserError, match="no last.pt"):
        Trainer(config, tmp_path / "empty", resume=True)
    (tmp_path / "used" / "round_001").mkdir(parents=True)
    with pytest.raises(UserError, match="--resume"):
        Trainer(config, tmp_path / "used")
    with pytest.raises(UserError, match="no finished round"):
        load_rounds(tmp_path / "used")
    with pytest.raises(UserError, match="does not exist"):
        load_rounds(tmp_path / "nowhere")


def test_train_command_refuses_resume_with_another_config(tmp_path):
    from spin.cli.train import train_command

    with pytest.raises(UserError, match="--resume"):
        train_command(overrides=[], config=CONFIGS / "default.yaml", run_dir=None, resume=tmp_path)
    with pytest.raises(UserError, match="config.yaml"):
        train_command(overrides=[], config=None, run_dir=None, resume=tmp_path)
