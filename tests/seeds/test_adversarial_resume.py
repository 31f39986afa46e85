"""Exact resume with HMR's discriminator through the real trainer (fitting off, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spin.config import TrainConfig
from spin.config_loading import load_config
from spin.training.checkpoint import load_checkpoint
from spin.training.trainer import LAST_CHECKPOINT, Trainer


@pytest.fixture(scope="module")
def tiny_data(body, tmp_path_factory):
    from spin.data.synthetic import synthesize_dataset

    out = tmp_path_factory.mktemp("adv_resume")
    return synthesize_dataset(out, body, n_train=12, n_test=4, image_size=64, seed=5, gt_fraction=0.25,
                              progress=False)


def _config(data, run_dir) -> TrainConfig:
    overrides = {
        "fitting.mode": '"off"', "wandb.enabled": "false", "torch_threads": 1, "model.backbone": "resnet18",
        "model.img_res": 32, "model.hidden": 32, "data.source": "files", "data.batch_size": 3,
        "data.num_workers": 0, "optim.lr": 1e-3, "optim.amp": '"off"', "rounds.num_rounds": 1,
        "rounds.steps_per_round": 4, "rounds.checkpoint_every": 2, "rounds.eval_batch_size": 4,
        "rounds.overlay_images": 0, "rounds.snapshot_store": "false", "run_dir": str(run_dir),
        "adversarial.enabled": "true", "adversarial.bank_size": 64, "adversarial.lr": 1e-3,
        "data.train": f"[{{name: synth, annotations: '{data['train']}'}}]",
        "data.test": f"{{name: synth_test, annotations: '{data['test']}'}}",
    }
    return load_config(TrainConfig, None, [f"{k}={v}" for k, v in overrides.items()])


def _assert_equal_states(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_equal_states(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal_states(x, y, f"{path}/{i}")
    else:
        assert a == b, path


def test_stopped_and_resumed_run_with_the_discriminator_equals_an_uninterrupted_one(tiny_data, tmp_path):
    straight_dir, stopped_dir = tmp_path / "straight", tmp_path / "stopped"
    with Trainer(_config(tiny_data, straight_dir), straight_dir) as trainer:
        (metrics,) = trainer.train()
    straight = load_checkpoint(straight_dir / LAST_CHECKPOINT)
    # the round's record carries the prior's diagnostics (round means of every step's)
    prior = metrics["extensions"]
    assert set(prior) == {"adv/d_loss", "adv/e_loss", "adv/d_real_acc", "adv/d_fake_acc", "adv/d_acc"}
    assert prior["adv/d_loss"] > 0 and prior["adv/e_loss"] > 0 and 0 <= prior["adv/d_acc"] <= 1
    assert prior["adv/d_acc"] == pytest.approx(0.5 * (prior["adv/d_real_acc"] + prior["adv/d_fake_acc"]))

    def stop_after_two(t):
        if t.step == 2:
            t.request_stop()

    with Trainer(_config(tiny_data, stopped_dir), stopped_dir, on_step=stop_after_two) as trainer:
        trainer.train()
        assert trainer.stopped_early and trainer.step == 2
        # the prior ran: its loss is a term of the step, the discriminator moved off its start
        assert trainer.round_acc["loss/adversarial"] > 0
    half = load_checkpoint(stopped_dir / LAST_CHECKPOINT)
    assert half["step"] == 2 and "adversarial" in half["extensions"]
    with Trainer(_config(tiny_data, stopped_dir), stopped_dir, resume=True) as trainer:
        trainer.train()
    resumed = load_checkpoint(stopped_dir / LAST_CHECKPOINT)

    for key in ("model", "optimizer", "extensions", "rng", "step"):
        _assert_equal_states(straight[key], resumed[key], key)
    # and the discriminator did train (the equality above is not that of two untouched copies)
    before = half["extensions"]["adversarial"]["discriminator"]
    after = resumed["extensions"]["adversarial"]["discriminator"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
