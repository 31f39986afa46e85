"""`spin body synth|info|convert` through typer's runner."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from spin.cli.body import body_app
from spin.errors import UserError

runner = CliRunner()


def test_synth_writes_the_same_set_as_first_use(tmp_path, synth_files):
    result = runner.invoke(body_app, ["synth", "--out", str(tmp_path / "out"), "--seed", "0"])
    assert result.exit_code == 0, result.output
    for src in (synth_files.joint_regressor_extra,):
        np.testing.assert_array_equal(np.load(tmp_path / "out" / src.name), np.load(src))
    assert (tmp_path / "out" / "SMPL_NEUTRAL.pkl").read_bytes() == synth_files.model.read_bytes()
    assert (tmp_path / "out" / "gmm_08.pkl").read_bytes() == synth_files.prior.read_bytes()


def test_info(synth_files):
    result = runner.invoke(body_app, ["info", str(synth_files.model)])
    assert result.exit_code == 0, result.output
    for text in ("6890", "24", "synthetic", "inside the model file", "207"):
        assert text in result.output


def test_convert_then_info(tmp_path, synth_files):
    out = tmp_path / "model.npz"
    result = runner.invoke(body_app, ["convert", str(synth_files.model), str(out)])
    assert result.exit_code == 0, result.output
    with np.load(out) as data:
        assert data["v_template"].shape == (6890, 3) and "J_regressor_extra" in data.files
    result = runner.invoke(body_app, ["info", str(out)])
    assert result.exit_code == 0 and "inside the model file" in result.output


def test_user_errors_propagate_for_the_main_cli(tmp_path):
    result = runner.invoke(body_app, ["info", str(tmp_path / "missing.pkl")])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
    result = runner.invoke(body_app, ["convert", str(tmp_path / "missing.pkl"), str(tmp_path / "o.npz")])
    assert isinstance(result.exception, UserError)


@pytest.mark.parametrize("command", ["synth", "info", "convert"])
def test_help(command):
    result = runner.invoke(body_app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
