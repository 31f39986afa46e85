"""`spin experiment` end to end on a tiny plan: the real runner in a subprocess, each run the real
`spin train` on the embedded synthetic data (generated into the shared cache on first use).

Killed with SIGKILL after its first run finished and started again, it skips that run (the log says
so and its metrics.json is untouched), finishes the other, and writes the results files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spin.experiments.runner import LOG_FILE, launch

pytestmark = pytest.mark.e2e

TINY = [
    "fitting.mode=off",
    "wandb.enabled=false",
    "torch_threads=1",
    "rounds.num_rounds=1",
    "rounds.steps_per_round=3",
    "rounds.checkpoint_every=3",
    "rounds.eval_batch_size=16",
    "rounds.overlay_images=0",
    "rounds.snapshot_store=false",
    "data.synthetic.n_train=32",
    "data.synthetic.n_test=16",
    "data.batch_size=4",
    "data.num_workers=0",
    "model.img_res=32",
    "model.hidden=32",
]
PLAN = """\
name: tiny
description: two learning rates, one seed, three steps
rows:
  - {name: slow, overrides: {optim.lr: 0.0001}}
  - {name: fast, overrides: {optim.lr: 0.001}}
metrics:
  - {key: pa_mpjpe, label: PA-MPJPE, unit: mm}
  - {key: mpjpe, label: MPJPE, unit: mm}
claims:
  - {text: fast beats slow, better: fast, worse: slow, metric: pa_mpjpe}
"""


def _command(plan: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spin.cli.experiment",
        str(plan),
        "--out",
        str(out),
        "--seeds",
        "1",
        *TINY,
    ]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_ADDRESS="local")


def test_killed_and_rerun_it_skips_the_finished_run_and_writes_results(tmp_path):
    plan = tmp_path / "tiny.yaml"
    plan.write_text(PLAN)
    out = tmp_path / "exp"
    log = out / LOG_FILE
    runner = subprocess.Popen(
        _command(plan, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 240
        while not (log.is_file() and "finished slow seed 0" in log.read_text()):
            assert runner.poll() is None, f"runner ended early with {runner.returncode}"
            assert time.monotonic() < deadline, "the first run did not finish in time"
            time.sleep(0.2)
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.kill()
        runner.wait()
    first = out / "runs" / "slow" / "seed_0" / "round_001" / "metrics.json"
    assert first.is_file()
    stamp = first.stat().st_mtime_ns
    assert not (out / "results.json").exists()

    rerun = subprocess.run(_command(plan, out), env=_env(), capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    lines = log.read_text().splitlines()
    assert sum("start slow seed 0" in line for line in lines) == 1  # never started again
    assert any("skip slow seed 0: finished" in line for line in lines)
    assert any("finished fast seed 0" in line for line in lines)
    assert first.stat().st_mtime_ns == stamp

    results = json.loads((out / "results.json").read_text())
    rows = {row["name"]: row for row in results["rows"]}
    for name in ("slow", "fast"):
        (run,) = rows[name]["runs"]
        assert run["status"] == "finished"
        metrics = json.loads((Path(run["run_dir"]) / "round_001" / "metrics.json").read_text())
        assert run["metrics"]["pa_mpjpe"] == metrics["pa_mpjpe"] > 0
        assert rows[name]["summary"]["pa_mpjpe"]["n"] == 1
    assert results["claims"][0]["decision"] == "undetermined"  # one seed gives no standard error
    text = (out / "results.md").read_text()
    assert "| slow | 1/1 |" in text and "| fast | 1/1 |" in text
    assert (out / "bars.png").read_bytes()[:4] == b"\x89PNG"

    # The same plan into another folder with --reuse: both runs are linked, none is trained again.
    again = tmp_path / "again"
    reused = subprocess.run(_command(plan, again) + ["--reuse", str(out)], env=_env(), capture_output=True,
                            text=True, timeout=240)
    assert reused.returncode == 0, reused.stdout[-2000:] + reused.stderr[-2000:]
    log_again = (again / LOG_FILE).read_text()
    assert "reuse slow seed 0" in log_again and "reuse fast seed 0" in log_again
    assert not any(line.split(" ")[1:2] == ["start"] for line in log_again.splitlines())  # nothing trained
    linked = json.loads((again / "results.json").read_text())
    def first_runs(res):
        return [row["runs"][0]["metrics"] for row in res["rows"]]

    assert first_runs(linked) == first_runs(results)
    assert "Runs reused from other experiment folders" in (again / "results.md").read_text()


def test_a_run_past_its_timeout_is_stopped(tmp_path):
    outcome = launch(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log.txt", timeout_s=1.0
    )
    assert outcome.status == "timeout" and outcome.seconds < 30


def test_a_run_is_stopped_promptly_when_the_runner_ignores_sigint(tmp_path):
    # A runner started with `nohup ... &` inherits SIGINT ignored; its runs must still get the SIGINT.
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        outcome = launch(
            [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "log.txt", timeout_s=1.0
        )
    finally:
        signal.signal(signal.SIGINT, before)
    assert outcome.status == "timeout" and outcome.seconds < 30


def test_a_failing_run_reports_its_error_line(tmp_path):
    script = "import sys; print('working'); print('error: bad key'); print('stopping actors'); sys.exit(1)"
    outcome = launch([sys.executable, "-c", script], tmp_path / "log.txt", timeout_s=30)
    assert outcome.status == "failed" and outcome.message == "error: bad key"
    crash = launch([sys.executable, "-c", "raise KeyError('k')"], tmp_path / "crash.txt", timeout_s=30)
    assert crash.status == "failed" and crash.message == "KeyError: 'k'"
