"""`spin eval` through typer's runner with a checkpoint in SPIN's released layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spin.errors import UserError
from spin.models import ModelConfig, Regressor
from spin.models.checkpoints import project_to_spin_state


@pytest.fixture(scope="module")
def spin_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    means = {"pose": np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), 24),
             "shape": np.zeros(10, np.float32), "cam": np.array([0.9, 0, 0], np.float32)}
    model = Regressor(ModelConfig(backbone="resnet50"), means)
    path = tmp_path_factory.mktemp("ckpt") / "model_checkpoint.pt"
    torch.save({"model": project_to_spin_state(model.state_dict()), "epoch": 1}, path)
    return path


@pytest.mark.parametrize("protocol", [None, "h36m-p1", "mpi-inf-3dhp"])
def test_spin_checkpoint_evaluates_and_writes_exactly_the_named_file(tmp_path, spin_checkpoint, test_split,
                                                                    eval_app, protocol):
    out = tmp_path / "predictions"  # no .npz suffix: the file must still be exactly this path
    args = ["eval", "--checkpoint", str(spin_checkpoint), "--data", str(test_split), "--img-res", "64",
            "--out", str(out), "--json", "--device", "cpu", "--batch-size", "4"]
    if protocol:
        args += ["--protocol", protocol]
    result = CliRunner().invoke(eval_app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output.strip().splitlines()[-1])
    assert metrics["protocol"] == (protocol or "synthetic") and metrics["count"] == 6
    assert metrics["out"] == str(out) and out.is_file() and not (tmp_path / "predictions.npz").exists()
    assert 0 < metrics["pa_mpjpe"] <= metrics["mpjpe"]
    if protocol == "mpi-inf-3dhp":
        assert 0 <= metrics["pa_pck"] <= 1 and 0 <= metrics["auc"] <= 1
    with np.load(out) as saved:
        assert saved["pose"].shape == (6, 72) and saved["betas"].shape == (6, 10)
        assert saved["cam"].shape == (6, 3)
        assert saved["error_mpjpe"].shape == (6,)
        np.testing.assert_allclose(saved["error_mpjpe"].mean(), metrics["mpjpe"])
    assert [p.name for p in tmp_path.iterdir()] == ["predictions"]  # no temporary file left behind


def test_a_checkpoint_of_another_kind_is_one_clear_error(tmp_path, test_split, eval_app):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"backbone.conv.weight": torch.zeros(1)}}, path)
    result = CliRunner().invoke(eval_app, ["eval", "--checkpoint", str(path), "--data", str(test_split)])
    assert isinstance(result.exception, UserError) and "holds no network weights" in str(result.exception)
