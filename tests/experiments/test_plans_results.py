"""Plans, preflight and results without training: the built-in catalog, one-line problems for rows
whose keys do not exist yet, and results.json / results.md / plots from run folders' metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spin.config import TrainConfig
from spin.config_loading import load_config
from spin.errors import UserError
from spin.experiments import (
    EXPERIMENT_NAMES,
    Claim,
    Experiment,
    Metric,
    Row,
    collect,
    expand,
    get_experiment,
)
from spin.experiments.plan import format_overrides, load_plan_file
from spin.experiments.plots import write_plots
from spin.experiments.results import write_results
from spin.experiments.runner import RUN_RECORD, check_record, default_config, train_command
from spin.training.rounds import round_dir, write_metrics


def test_every_built_in_plan_is_valid_and_its_rows_resolve_or_name_the_missing_key(tmp_path):
    for name in EXPERIMENT_NAMES:
        experiment = get_experiment(name)
        plans = expand(experiment, tmp_path / name, seeds=2, quick=True)
        assert [p.row.name for p in plans] == [r.name for r in experiment.rows]
        for plan in plans:
            if plan.problem is None:
                assert [s.seed for s in plan.runs] == [0, 1]
                assert all(s.num_rounds == 2 for s in plan.runs)  # --quick
            else:
                # Only rows waiting for a feature may fail, and with the key named in backticks.
                assert plan.row.needs, plan.problem
                assert "`" in plan.problem and "does not exist" in plan.problem
                assert plan.problem.count("\n") == 0


def test_missing_key_message_names_the_key_and_the_feature(tmp_path):
    experiment = Experiment(
        "x",
        "",
        "",
        [
            Row("adv", {"nonexistent.feature": True}, needs="HMR's prior"),
            Row("ok", {"fitting.mode": "off"}),
        ],
        [Metric("pa_mpjpe", "PA")],
    )
    adv, ok = expand(experiment, tmp_path, seeds=1)
    assert adv.runs == []
    assert "needs HMR's prior" in adv.problem and "`nonexistent.feature`" in adv.problem
    assert ok.problem is None and len(ok.runs) == 1


def test_a_bad_value_keeps_the_loaders_sentence(tmp_path):
    experiment = Experiment(
        "x", "", "", [Row("bad", {"rounds.num_rounds": "many"})], [Metric("pa_mpjpe", "PA")]
    )
    (plan,) = expand(experiment, tmp_path, seeds=1)
    assert "rounds.num_rounds" in plan.problem and "does not exist" not in plan.problem


def test_overrides_round_trip_through_the_config_loader():
    values = {
        "fitting.mode": "off",
        "optim.lr": 1e-4,
        "wandb.enabled": False,
        "data.synthetic.gt_fraction": 0.0,
        "fitting.smplify.anchor_weight": 10.0,
    }
    config = load_config(TrainConfig, default_config(), format_overrides(values))
    assert config.fitting.mode == "off" and config.optim.lr == 1e-4 and config.wandb.enabled is False
    assert config.data.synthetic.gt_fraction == 0.0 and config.fitting.smplify.anchor_weight == 10.0


def test_row_overrides_win_over_the_users_and_quick(tmp_path):
    experiment = get_experiment("nbf-3d-fraction")
    plans = expand(experiment, tmp_path, seeds=1, quick=True, extra=["data.synthetic.gt_fraction=0.7"])
    spec = next(p for p in plans if p.row.name == "off-5pct").runs[0]
    config = load_config(TrainConfig, spec.config, spec.overrides)
    assert config.data.synthetic.gt_fraction == 0.05 and config.seed == 0
    command = train_command(spec, "fresh")
    assert command[1:4] == ["-m", "spin.cli.main", "train"] and "--run-dir" in command
    assert train_command(spec, "resumable")[-2:] == ["--resume", str(spec.run_dir)]


def test_static_fits_row_uses_its_own_store_with_fitting_off(tmp_path):
    plans = expand(get_experiment("spin-table1"), tmp_path, seeds=2)
    static = next(p for p in plans if p.row.name == "static-fits")
    for spec in static.runs:
        config = load_config(TrainConfig, spec.config, spec.overrides)
        assert config.fitting.mode == "off" and config.store == str(spec.run_dir / "fits.lmdb")
        assert spec.prefit_store == tmp_path.resolve() / "prefit" / "static-fits" / "fits.lmdb"


def test_a_run_folder_made_with_other_settings_is_refused(tmp_path):
    experiment = Experiment("x", "", "", [Row("a", {"optim.lr": 1e-4})], [Metric("pa_mpjpe", "PA")])
    (plan,) = expand(experiment, tmp_path, seeds=1)
    spec = plan.runs[0]
    spec.run_dir.mkdir(parents=True)
    (spec.run_dir / RUN_RECORD).write_text(
        json.dumps({"config": str(spec.config), "overrides": ["seed=7"]})
    )
    with pytest.raises(UserError, match="other settings"):
        check_record(spec)
    (spec.run_dir / RUN_RECORD).write_text(
        json.dumps({"config": str(spec.config), "overrides": spec.overrides})
    )
    check_record(spec)


def test_plan_validation_and_yaml_plans(tmp_path):
    with pytest.raises(UserError, match="twice"):
        Experiment("x", "", "", [Row("a"), Row("a")], [Metric("pa_mpjpe", "PA")])
    with pytest.raises(UserError, match="does not have"):
        Experiment("x", "", "", [Row("a")], [Metric("pa_mpjpe", "PA")], [Claim("c", "a", "b", "pa_mpjpe")])
    path = tmp_path / "plan.yaml"
    path.write_text(
        "name: mine\nrows:\n  - name: a\n    overrides: {optim.lr: 0.001}\n  - name: b\n"
        "metrics: [pa_mpjpe]\nclaims:\n  - {text: a wins, better: a, worse: b, metric: pa_mpjpe}\n"
    )
    plan = load_plan_file(path)
    assert (
        plan.name == "mine" and [r.name for r in plan.rows] == ["a", "b"] and plan.claims[0].better == "a"
    )
    path.write_text("rows:\n  - name: a\n    colour: red\n")
    with pytest.raises(UserError, match="plan schema"):
        load_plan_file(path)


def _finish(spec, metrics: dict) -> None:
    write_metrics(
        round_dir(spec.run_dir, spec.num_rounds) / "metrics.json", {"round": spec.num_rounds, **metrics}
    )


def test_results_files_from_run_folders(tmp_path):
    experiment = Experiment(
        "demo",
        "two rows",
        "a table",
        [
            Row("good", {"optim.lr": 1e-4}, series="s", x=0.1),
            Row("bad", {"optim.lr": 2e-4}, series="s", x=0.5),
            Row("later", {"nonexistent.feature": True}, needs="a feature"),
        ],
        [
            Metric("pa_mpjpe", "PA-MPJPE", "mm"),
            Metric("fits_pa_mpjpe", "fits", "mm"),
            Metric("train_loss.betas", "betas loss"),
        ],
        [Claim("good beats bad", "good", "bad", "pa_mpjpe"), Claim("fits", "good", "bad", "fits_pa_mpjpe")],
    )
    out = tmp_path / "exp"
    plans = expand(experiment, out, seeds=3)
    good, bad, later = plans
    for spec, value in zip(good.runs, (60.0, 62.0, 61.0), strict=True):
        _finish(spec, {"pa_mpjpe": value, "train_loss": {"betas": 0.5}})
    for spec, value in zip(bad.runs[:2], (80.0, 84.0), strict=True):  # third seed never ran
        _finish(spec, {"pa_mpjpe": value, "fits_pa_mpjpe": None, "train_loss": {"betas": 0.7}})
    results = collect(experiment, plans, settings={"seeds": 3, "quick": False})
    plots = write_plots(out, results)
    json_path, md_path = write_results(out, results, plots)

    saved = json.loads(json_path.read_text())
    rows = {row["name"]: row for row in saved["rows"]}
    assert rows["good"]["summary"]["pa_mpjpe"]["n"] == 3
    assert math.isclose(rows["good"]["summary"]["pa_mpjpe"]["mean"], 61.0)
    assert math.isclose(rows["good"]["summary"]["pa_mpjpe"]["std"], 1.0)
    assert [r["metrics"].get("pa_mpjpe") for r in rows["bad"]["runs"]] == [80.0, 84.0, None]
    assert rows["good"]["runs"][0]["final_round"] == {"round": 3.0, "pa_mpjpe": 60.0}
    assert rows["bad"]["status"] == "partial" and rows["bad"]["runs"][2]["status"] == "not run"
    assert math.isclose(rows["bad"]["summary"]["train_loss.betas"]["mean"], 0.7)
    assert rows["later"]["status"] == "unavailable" and "`nonexistent.feature`" in rows["later"]["problem"]
    claims = {c["text"]: c for c in saved["claims"]}
    assert claims["good beats bad"]["decision"] == "reproduced" and math.isclose(
        claims["good beats bad"]["advantage"], 21.0
    )
    assert claims["fits"]["decision"] == "undetermined"  # the metric is not in these metrics.json files

    text = md_path.read_text()
    assert "| good | 3/3 | 61.0 ± 1.00 |" in text
    assert "| bad | 2/3 | 82.0 ± 2.83 |" in text
    assert "reproduced" in text and "`nonexistent.feature`" in text and "bad seed 2: not run" in text
    for plot in plots:
        assert Path(plot).stat().st_size > 1000 and Path(plot).read_bytes()[:4] == b"\x89PNG"
    assert {Path(p).name for p in plots} == {"bars.png", "curves.png"}


def _app():
    import typer

    from spin.cli.experiment import experiment_command

    app = typer.Typer()
    app.command()(experiment_command)
    return app


def test_cli_lists_experiments_and_dry_runs_name_unavailable_rows(tmp_path):
    from typer.testing import CliRunner

    listed = CliRunner().invoke(_app(), ["--list"])
    assert listed.exit_code == 0
    assert all(name in listed.output for name in EXPERIMENT_NAMES)
    dry = CliRunner().invoke(_app(), ["hmr-unpaired", "--out", str(tmp_path / "h"), "--quick", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    rows = len(get_experiment("hmr-unpaired").rows)
    assert dry.output.count("spin.cli.main train") == 2 * rows  # every row × 2 quick seeds
    assert not (tmp_path / "h").exists()  # a dry run starts nothing and writes nothing
    missing = CliRunner().invoke(_app(), ["spin-table1"])
    assert isinstance(missing.exception, UserError) and "--out" in str(missing.exception)


def test_rows_selects_named_rows_and_an_unknown_name_lists_the_rows():
    from spin.experiments import select_rows

    experiment = get_experiment("spin-table1")
    assert select_rows(experiment, None) is None
    assert select_rows(experiment, "2d-only, in-loop-sync") == {"2d-only", "in-loop-sync"}
    with pytest.raises(UserError, match=r"no-such-row is not a row of spin-table1; its rows are 2d-only"):
        select_rows(experiment, "2d-only,no-such-row")


def test_a_runner_given_rows_runs_only_those(tmp_path):
    from spin.experiments import Runner

    plans = expand(get_experiment("spin-table1"), tmp_path, seeds=1)
    ran = []

    class Recording(Runner):
        def _one(self, plan, spec, progress, task):
            ran.append(spec.row)

    Recording(tmp_path).run(plans, {"static-fits"})
    assert ran == ["static-fits"]
