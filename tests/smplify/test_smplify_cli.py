"""`spin fit` end to end on a tiny SPIN-format file (synthetic body model, real store)."""

from __future__ import annotations

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from fitting_workers.smplify.synthetic import make_problems, save_problems
from spin.cli.fit import fit_command
from spin.errors import UserError
from store import FitsStore


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command()(fit_command)
    return app


@pytest.fixture(scope="module")
def dataset(body, tmp_path_factory):
    """6 people; the box is the crop itself (center 112, scale 224/200), so image = crop pixels."""
    problems = make_problems(body, 6, seed=11, missing_fraction=0.0)
    folder = tmp_path_factory.mktemp("fitdata")
    save_problems(problems, folder)
    return folder, problems


def test_fit_writes_fits_and_a_summary(app, dataset, tmp_path):
    folder, problems = dataset
    out = tmp_path / "fits.npz"
    result = CliRunner().invoke(app, ["--data", str(folder / "data.npz"), "--out", str(out), "--init",
                                      str(folder / "init.npz"), "--batch-size", "4", "--iters", "15"])
    assert result.exit_code == 0, result.output
    assert "mean loss" in result.output and "fits/s" in result.output
    with np.load(out) as fits:
        assert fits["pose"].shape == (6, 72) and fits["betas"].shape == (6, 10)
        assert fits["cam_t"].shape == (6, 3)
        assert fits["loss"].shape == (6,) and fits["valid"].dtype == bool and not fits["failed"].any()
        assert np.isfinite(fits["pose"]).all()
        assert (fits["valid"] == (fits["loss"] < 100)).all() and fits["valid"].mean() > 0.5
        init = np.load(folder / "init.npz")
        assert not np.allclose(fits["pose"], init["pose"])  # the fit moved away from the initialisation


def test_fit_offers_fits_to_the_store(app, dataset, tmp_path):
    folder, _ = dataset
    args = ["--data", str(folder / "data.npz"), "--out", str(tmp_path / "fits.npz"), "--iters", "3",
            "--store", str(tmp_path / "store"), "--dataset", "synth"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "fits.npz") as fits:
        loss = fits["loss"]
    assert "stored (improved)" in result.output and "6 (0)" in result.output
    fits_store = FitsStore(tmp_path / "store", readonly=True)
    got = fits_store.get([f"synth/{i}" for i in range(6)])
    assert got["present"].all()
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-6)


def test_user_mistakes_are_user_errors(app, dataset, tmp_path):
    folder, _ = dataset
    base = ["--data", str(folder / "data.npz"), "--out", str(tmp_path / "f.npz")]
    for extra, message in ((["--mode", "fast"], "--mode"), (["--store", str(tmp_path / "s")], "--dataset"),
                           (["--init", str(tmp_path / "missing.npz")], "missing.npz")):
        result = CliRunner().invoke(app, base + extra)
        assert isinstance(result.exception, UserError), result.output
        assert message in str(result.exception)
    assert not (tmp_path / "f.npz").exists()
