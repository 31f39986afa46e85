"""End-to-end runs of the real loop on tiny synthetic data (no mocks of our components).

- async: fits enter the store from the Ray actors, the trainer then trains on store supervision,
  rounds write checkpoints, snapshots, metrics; `spin rounds` and `spin eval` read them.
- kill and resume: a run killed with SIGKILL after a checkpoint and resumed ends in exactly the
  state of an uninterrupted run. Compared with `fitting.mode=off`, where a run is deterministic;
  async fitting is not (which fit lands before which step depends on scheduling), and in sync
  mode fits written after the last checkpoint stay in the store (by design: fits are never lost),
  so the resumed run sees better fits than the uninterrupted one did.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from fitting_workers.smplify.losses import fit_quality
from spin.body import BodyModel
from spin.cli.eval import eval_command
from spin.cli.train import rounds_command
from spin.config import TrainConfig
from spin.config_loading import load_config
from spin.data.spin_format import load_spin_npz
from spin.training.trainer import Trainer
from store import FitsStore

pytestmark = pytest.mark.e2e


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("rounds")(rounds_command)
    return app


def test_async_run_fits_enter_the_store_and_supervise(tmp_path, e2e_data, local_ray_env, e2e_overrides):
    run_dir = tmp_path / "async"
    overrides = e2e_overrides(e2e_data, run_dir, "async", **{"wandb.enabled": "true"})
    config = load_config(TrainConfig, None, overrides)

    def wait_for_first_fits(trainer):
        # The tiny run is faster than actor start-up; let round 1's jobs land before round 2 trains.
        if trainer.step == config.rounds.steps_per_round:
            assert trainer.fitting.pool.wait_idle(timeout=90)

    with Trainer(config, run_dir, on_step=wait_for_first_fits) as trainer:
        rounds = trainer.train()
        store_path = trainer.store_path
    assert [r["round"] for r in rounds] == [1, 2]
    second = rounds[1]
    assert second["fits_count"] > 0 and second["fitting"]["fitted"] > 0
    assert second["batches_with_fit_supervision"] > 0 and second["supervised_fit_frac"] > 0
    # synthetic data: the fits' own 3D error against the hidden ground truth is measured per round
    assert second["fits_hidden_fitted"] > 0 and second["fits_pa_mpjpe"] > 0
    for r in rounds:  # coverage of the round's own jobs: offered, fitted or dropped
        assert r["fits_offered_in_round"] > 0 and 0 < r["fitted_share"]
        assert r["fits_fitted_in_round"] + r["fits_dropped_in_round"] <= r["fits_offered_in_round"]
    for number in (1, 2):
        folder = run_dir / f"round_{number:03d}"
        assert (folder / "checkpoint.pt").is_file() and (folder / "metrics.json").is_file()
        snapshot = FitsStore(folder / "fits.lmdb", readonly=True)
        assert len(snapshot) <= len(FitsStore(store_path, readonly=True))
        assert (folder / "overlay_00.png").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*"))  # wandb logged offline

    # Every stored fit is the fit of its own sample: its loss recomputes on that key's keypoints.
    store = FitsStore(store_path, readonly=True)
    chunk = next(store.iter_dataset("synth"))
    annotations = load_spin_npz(e2e_data["train"])
    body = BodyModel.default()
    joints = body.joints(torch.as_tensor(chunk["pose"]), torch.as_tensor(chunk["betas"]))
    keypoints = torch.as_tensor(annotations.keypoints[chunk["index"]])
    recomputed = fit_quality(joints, torch.as_tensor(chunk["cam_t"]), keypoints, 5000.0, 224).numpy()
    assert np.allclose(recomputed, chunk["loss"], rtol=1e-3, atol=1e-3)
    # ... and on another sample's keypoints it would not.
    shuffled = fit_quality(joints, torch.as_tensor(chunk["cam_t"]), keypoints.roll(1, 0), 5000.0, 224).numpy()
    assert np.mean(shuffled > recomputed) > 0.8

    runner = CliRunner()
    result = runner.invoke(_cli(), ["rounds", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [r["round"] for r in listed] == [1, 2]
    assert all({"round", "mpjpe", "pa_mpjpe", "frac_valid"} <= set(r) for r in listed)
    result = runner.invoke(_cli(), ["rounds", str(run_dir)])
    assert result.exit_code == 0 and (run_dir / "rounds.png").is_file()

    out = tmp_path / "pred.npz"
    result = runner.invoke(_cli(), ["eval", "--checkpoint", str(run_dir / "last.pt"),
                                    "--data", str(e2e_data["test"]), "--out", str(out), "--json",
                                    "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["count"] == 6 and metrics["pa_mpjpe"] <= metrics["mpjpe"] and metrics["pve"] > 0
    assert abs(metrics["pa_mpjpe"] - listed[-1]["pa_mpjpe"]) < 1e-6  # same checkpoint, same test split
    assert np.load(out)["joints"].shape == (6, 49, 3)


TRAIN_SCRIPT = """
import sys
from pathlib import Path
from spin.cli.train import train_command
resume, overrides = sys.argv[1], sys.argv[2:]
train_command(overrides=overrides, config=None, run_dir=None, resume=Path(resume) if resume else None)
"""


def _train_subprocess(env: dict[str, str], overrides: list[str],
                      resume: Path | None = None) -> subprocess.Popen:
    """`spin train [overrides]` or `spin train --resume DIR` through the command's own function."""
    args = [sys.executable, "-c", TRAIN_SCRIPT, str(resume or ""), *overrides]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, e2e_data, e2e_overrides, run_env):
    extra = {"rounds.steps_per_round": 8, "rounds.overlay_images": 0}
    env = run_env()
    straight = _train_subprocess(env, e2e_overrides(e2e_data, tmp_path / "straight", "off", **extra))
    killed = _train_subprocess(env, e2e_overrides(e2e_data, tmp_path / "killed", "off", **extra))
    last = tmp_path / "killed" / "last.pt"
    deadline = time.monotonic() + 120
    while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert killed.poll() is None, "the run ended before it could be killed:\n" + killed.stdout.read()
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    interrupted_at = torch.load(last, weights_only=False)["step"]
    assert 0 < interrupted_at < 16

    resumed = _train_subprocess(env, [], resume=tmp_path / "killed")
    for process in (straight, resumed):
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, output
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert a["step"] == b["step"] == 16
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    states = zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True)
    for sa, sb in states:
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for number in (1, 2):
        ma = json.loads((tmp_path / "straight" / f"round_{number:03d}" / "metrics.json").read_text())
        mb = json.loads((tmp_path / "killed" / f"round_{number:03d}" / "metrics.json").read_text())
        assert ma["pa_mpjpe"] == mb["pa_mpjpe"] and ma["mpjpe"] == mb["mpjpe"]
