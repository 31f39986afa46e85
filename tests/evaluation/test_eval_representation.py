"""`spin eval` of a checkpoint trained on an NBF input representation (a part segmentation): it is
evaluated on that representation, read from the checkpoint's saved config, and scores what the
trainer's own round evaluation scored; a contradicting --representation is one clear sentence."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from spin.config import TrainConfig
from spin.config_loading import load_config
from spin.errors import UserError
from spin.training.trainer import LAST_CHECKPOINT, Trainer

REPRESENTATION = "parts6"




@pytest.fixture(scope="module")
def parts_run(tmp_path_factory):
    """A 2-step run on the synthetic data seen as 6 part channels: (last.pt, test split, round metrics)."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("parts_run") / "run"
    overrides = [
        'fitting.mode="off"', "wandb.enabled=false", "torch_threads=1", "model.backbone=resnet18",
        "model.img_res=32", "model.hidden=32", "data.source=synthetic", "data.synthetic.n_train=8",
        "data.synthetic.n_test=4", "data.synthetic.image_size=64", "data.synthetic.gt_fraction=1.0",
        "data.synthetic.seed=11", f"data.synthetic.representation={REPRESENTATION}", "data.batch_size=4",
        "data.num_workers=0", 'optim.amp="off"', "rounds.num_rounds=1", "rounds.steps_per_round=2",
        "rounds.checkpoint_every=2", "rounds.eval_batch_size=4", "rounds.overlay_images=0",
        "rounds.snapshot_store=false", "rounds.drain_fits_s=0",
    ]
    config = load_config(TrainConfig, None, overrides)
    assert config.model.in_channels == 6
    with Trainer(config, run_dir) as trainer:
        (metrics,) = trainer.train()
        test_split = trainer.data.test.annotations.path
    return run_dir / LAST_CHECKPOINT, test_split, metrics


def _eval(app, checkpoint, data, *extra):
    args = ["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--json", "--device", "cpu",
            "--batch-size", "4", *extra]
    return CliRunner().invoke(app, args)


def test_eval_uses_the_checkpoints_representation_and_matches_the_round_evaluation(parts_run, eval_app):
    checkpoint, test_split, round_metrics = parts_run
    for extra in ([], ["--representation", REPRESENTATION]):  # naming the same one changes nothing
        result = _eval(eval_app, checkpoint, test_split, *extra)
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.output.strip().splitlines()[-1])
        assert metrics["representation"] == REPRESENTATION and metrics["count"] == 4
        for key in ("mpjpe", "pa_mpjpe", "joint_rotation_error", "pckh"):
            assert metrics[key] == pytest.approx(round_metrics[key], rel=1e-4, abs=1e-6), key
        assert 0 < metrics["joint_rotation_error"] < torch.pi and 0 <= metrics["pckh"] <= 1


def test_the_table_shows_the_input_and_nbfs_measures(parts_run, eval_app):
    checkpoint, test_split, _ = parts_run
    result = CliRunner().invoke(eval_app, ["eval", "--checkpoint", str(checkpoint), "--data", str(test_split),
                                         "--device", "cpu", "--batch-size", "4"],
                                env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert f"input {REPRESENTATION}" in result.output
    assert "joint rotation error (rad)" in result.output and "PCKh@0.5" in result.output


@pytest.mark.parametrize("wanted,words", [("rgb", ["'parts6'", "'rgb'", "--representation"]),
                                          ("parts7", ["'parts7'", "parts12", "heatmaps24"])])
def test_a_representation_that_contradicts_the_checkpoint_is_one_sentence(parts_run, wanted, words, eval_app):
    checkpoint, test_split, _ = parts_run
    result = _eval(eval_app, checkpoint, test_split, "--representation", wanted)
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert all(w in message for w in words) and "\n" not in message


def test_a_test_file_without_part_maps_is_one_sentence_before_any_batch(parts_run, tmp_path, eval_app):
    checkpoint, test_split, _ = parts_run
    copy = tmp_path / "rgb_only"
    shutil.copytree(test_split.parent, copy, ignore=shutil.ignore_patterns("*_parts.png"))
    assert not list(copy.rglob("*_parts.png")) and list(copy.rglob("*.png")) + list(copy.rglob("*.jpg"))
    result = _eval(eval_app, checkpoint, copy / test_split.name)
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)
    assert "'parts6'" in message and "part map" in message and test_split.name in message
    assert "\n" not in message
