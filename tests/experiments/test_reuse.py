"""`spin experiment --reuse DIR`: a planned run that trains exactly as a finished run of another
experiment folder is linked to it, not trained; anything that changes training keeps them apart."""

from __future__ import annotations

import json
import shutil

import pytest

from fitting_workers.smplify.config import DEFAULT_PRESET
from spin.config import TrainConfig
from spin.config_loading import config_to_yaml, load_config
from spin.errors import UserError
from spin.experiments import Runner, collect, expand, get_experiment, run_state
from spin.experiments.reuse import RUN_RECORD, finished_runs, identical_run
from spin.experiments.runner import FRESH, TRAIN_LOG
from spin.training.rounds import round_dir, write_metrics

EXTRA = ["wandb.enabled=false"]


def _finish(spec, pa_mpjpe: float) -> None:
    """A finished run as `spin train` leaves it: its resolved config.yaml and last round's metrics."""
    config = load_config(TrainConfig, spec.config, spec.overrides)
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / "config.yaml").write_text(config_to_yaml(config))
    record = {"config": str(spec.config), "overrides": spec.overrides}
    (spec.run_dir / RUN_RECORD).write_text(json.dumps(record))
    folder = round_dir(spec.run_dir, config.rounds.num_rounds)
    folder.mkdir(parents=True)
    write_metrics(folder / "metrics.json", {"round": config.rounds.num_rounds, "pa_mpjpe": pa_mpjpe,
                                            "mpjpe": 2 * pa_mpjpe, "joint_rotation_error": 0.2})


def _spec(plans, row: str, seed: int = 0):
    return next(p for p in plans if p.row.name == row).runs[seed]


@pytest.fixture
def source(tmp_path):
    """spin-table1's 2d-only and in-loop-async, seeds 0 and 1, finished."""
    out = tmp_path / "spin-table1"
    plans = expand(get_experiment("spin-table1"), out, seeds=2, extra=EXTRA)
    for row, base in (("2d-only", 100.0), ("in-loop-async", 90.0)):
        for seed in (0, 1):
            _finish(_spec(plans, row, seed), base + seed)
    return out


def test_an_identical_finished_run_is_linked_not_trained(tmp_path, source):
    out = tmp_path / "nbf"
    experiment = get_experiment("nbf-3d-fraction")
    plans = expand(experiment, out, seeds=2, extra=EXTRA)
    outcomes = Runner(out, reuse=[source]).run(plans, rows={"off-10pct", "loop-10pct"})
    assert set(outcomes) == {("off-10pct", 0), ("off-10pct", 1), ("loop-10pct", 0), ("loop-10pct", 1)}
    for (row, seed), outcome in outcomes.items():
        spec = _spec(plans, row, seed)
        origin = source.resolve() / "runs" / {"off-10pct": "2d-only", "loop-10pct": "in-loop-async"}[row]
        assert outcome.status == "finished" and outcome.seconds == 0.0
        assert not (spec.run_dir / TRAIN_LOG).exists()  # nothing was started
        record = json.loads((spec.run_dir / RUN_RECORD).read_text())
        assert record["reused_from"] == str(origin / f"seed_{seed}") and record["overrides"] == spec.overrides
        original = origin / f"seed_{seed}" / "round_003" / "metrics.json"
        assert spec.final_metrics.read_text() == original.read_text()
    results = collect(experiment, plans, outcomes)
    rows = {row["name"]: row for row in results["rows"]}
    assert [run["metrics"]["pa_mpjpe"] for run in rows["off-10pct"]["runs"]] == [100.0, 101.0]
    assert rows["loop-10pct"]["runs"][1]["reused_from"].endswith("in-loop-async/seed_1")
    assert rows["off-0pct"]["status"] == "partial"  # no identical run: not linked


def test_anything_that_changes_training_keeps_runs_apart(tmp_path, source):
    index = finished_runs(source)
    assert len(index) == 4
    plans = expand(get_experiment("nbf-3d-fraction"), tmp_path / "a", seeds=3, extra=EXTRA)
    off10 = _spec(plans, "off-10pct")
    assert identical_run(off10.config, off10.overrides, index) == source.resolve() / "runs/2d-only/seed_0"
    assert identical_run(off10.config, off10.overrides[:-1] + ["seed=2"], index) is None  # no seed 2
    for changed in ("optim.lr=0.001", "data.synthetic.gt_fraction=0.2", "rounds.steps_per_round=10",
                    "fitting.smplify.anchor_weight=0.0", "data.augment.rot_std_deg=30"):
        assert identical_run(off10.config, off10.overrides + [changed], index) is None, changed
    # SMPLify's preset value written out trains as the preset itself (the boosting rows' anchor)
    loop = _spec(plans, "loop-10pct")
    anchored = loop.overrides + [f"fitting.smplify.anchor_weight={DEFAULT_PRESET.anchor_weight}"]
    assert identical_run(loop.config, anchored, index) == source.resolve() / "runs/in-loop-async/seed_0"
    # how a run logs does not change what it trains
    logged = identical_run(off10.config, off10.overrides + ["wandb.enabled=true", "wandb.project=x"], index)
    assert logged is not None


def test_static_fits_rows_are_never_shared(tmp_path, source):
    out = tmp_path / "again"
    plans = expand(get_experiment("spin-table1"), out, seeds=1, extra=EXTRA)
    _finish(_spec(plans, "static-fits"), 80.0)
    runner = Runner(tmp_path / "other", reuse=[out])
    other = expand(get_experiment("spin-table1"), tmp_path / "other", seeds=1, extra=EXTRA)
    assert not runner.link_identical(_spec(other, "static-fits"))  # each store is the run's own copy
    assert runner.link_identical(_spec(other, "2d-only")) is False  # `out` holds no 2d-only run


def test_a_link_whose_source_is_gone_is_trained_afresh(tmp_path, source):
    out = tmp_path / "nbf"
    plans = expand(get_experiment("nbf-3d-fraction"), out, seeds=1, extra=EXTRA)
    Runner(out, reuse=[source]).run(plans, rows={"off-10pct"})
    spec = _spec(plans, "off-10pct")
    assert spec.final_metrics.is_file()
    shutil.rmtree(source / "runs" / "2d-only" / "seed_0")
    assert run_state(spec) == FRESH  # the next invocation starts it (no broken result is read)


def test_reuse_of_a_folder_that_is_no_experiment_says_so(tmp_path):
    with pytest.raises(UserError, match="no experiment folder there"):
        finished_runs(tmp_path)
