"""`spin fits init` end to end: real Ray, real SMPLify actors, real store writer actor, real LMDB."""

from __future__ import annotations

import math

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from spin.cli.fits_init import fits_init_command
from store import FitsStore

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    app.command()(fits_init_command)
    return app


def test_fits_init_fits_every_sample_into_the_store(app, synthetic_dataset, tmp_path, assert_ray_stopped):
    data, _, problems = synthetic_dataset
    store_path = tmp_path / "fits.lmdb"
    result = CliRunner().invoke(
        app,
        ["--data", str(data), "--store", str(store_path), "--dataset", "synth", "--workers", "2",
         "--batch-size", "4", "--iters", "5", "--cpus-per-actor", "0.5"],
        standalone_mode=False,
    )
    assert result.exception is None, result.output
    report = result.return_value
    assert_ray_stopped()

    n = len(problems)
    keys = [f"synth/{i}" for i in range(n)]
    with FitsStore(store_path, readonly=True) as store:
        stored = store.get(keys)
        assert len(store) == n
    assert stored["present"].all()
    assert np.isfinite(stored["loss"]).all() and np.isfinite(stored["pose"]).all()

    # The report agrees with itself and with what the store holds (a fresh store accepts every fit).
    assert report.samples == report.counts.fitted == report.counts.accepted == report.in_store == n
    counts = report.counts
    assert counts.failed_total == counts.dropped == counts.retried == counts.errors == 0
    assert report.counts.improved == 0
    assert report.counts.mean_loss == pytest.approx(float(stored["loss"].mean()), rel=1e-5)
    assert report.counts.frac_valid == pytest.approx(float((stored["loss"] < 100.0).mean()))
    assert report.fits_per_s > 0 and len(report.actor_nodes) == 1
    for column in ("samples", "fitted", "accepted", "failed", "retried", "dropped", "fits/s", "mean loss",
                   "frac valid"):
        assert column in result.output
    assert not math.isnan(report.counts.mean_loss)
