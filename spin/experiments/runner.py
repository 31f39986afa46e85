"""Run an experiment's training runs one after another, each the real `spin train` in a subprocess.

Layout under `--out DIR`: `runs/<row>/seed_<K>/` (a `spin train` run folder, plus `train.log` and
`experiment_run.json`, the command's overrides), `prefit/<row>/` (static fits made once per row),
`experiment.log` (one line per start, skip, resume, end). Resumable: a run whose last round's
metrics.json exists is skipped; one with `last.pt` is continued with `spin train --resume`; any
other folder is started afresh. Killed and rerun, the runner picks up where the runs stand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from spin.errors import UserError
from spin.experiments.plan import Experiment, Row, format_override, format_overrides
from spin.experiments.preflight import prefit_targets, resolve
from spin.experiments.reuse import RUN_RECORD, finished_runs, identical_run, link_run
from spin.training.rounds import METRICS_FILE, round_dir

RUNS_DIR = "runs"
PREFIT_DIR = "prefit"
LOG_FILE = "experiment.log"
TRAIN_LOG = "train.log"
LAST_CHECKPOINT = "last.pt"  # spin.training.trainer.LAST_CHECKPOINT (not imported: it pulls in the trainer)
STOP_GRACE_S = 60.0  # after SIGINT, how long a run may take to stop its fitting actors before SIGKILL
POLL_S = 1.0

FINISHED, RESUMABLE, FRESH = "finished", "resumable", "fresh"


@dataclass(frozen=True)
class RunSpec:
    """One seed of one row: where it runs and the exact `spin train` overrides."""

    row: str
    seed: int
    run_dir: Path
    config: Path
    overrides: list[str]
    num_rounds: int
    prefit_store: Path | None = None  # static fits copied into the run's store before it starts

    @property
    def final_metrics(self) -> Path:
        return round_dir(self.run_dir, self.num_rounds) / METRICS_FILE

    @property
    def label(self) -> str:
        return f"{self.row} seed {self.seed}"


@dataclass(frozen=True)
class RowPlan:
    """A row with its runs, or the one-line reason it cannot run (`problem`)."""

    row: Row
    config: Path
    runs: list[RunSpec]
    problem: str | None = None


def default_config() -> Path:
    """configs/default.yaml of the checkout (what `spin train` uses without --config)."""
    from spin.cli.train import DEFAULT_CONFIG

    if not DEFAULT_CONFIG.is_file():
        raise UserError(f"The default config {DEFAULT_CONFIG} is missing; pass --config FILE.")
    return DEFAULT_CONFIG


def expand(
    experiment: Experiment,
    out: Path,
    seeds: int,
    quick: bool = False,
    base_config: Path | None = None,
    extra: list[str] | None = None,
) -> list[RowPlan]:
    """Every row × seed as a `RunSpec`. Override order (later wins): quick, `extra` (the user's
    key=value for every run), the row's own, then `seed` and the prefit store."""
    if seeds < 1:
        raise UserError(f"--seeds is {seeds}; run at least 1 seed.")
    out = out.resolve()
    plans = []
    for row in experiment.rows:
        config = Path(row.config) if row.config else (base_config or default_config())
        if not config.is_file():
            raise UserError(
                f"Row {row.name} of {experiment.name}: config file {config} does not exist; fix the "
                "row's config or pass --config."
            )
        config = config.resolve()
        shared = (format_overrides(experiment.quick_overrides) if quick else []) + list(extra or [])
        shared += format_overrides(row.overrides)
        resolved = resolve(config, shared + ["seed=0"], needs=row.needs)
        if resolved.problem is not None:
            plans.append(RowPlan(row, config, [], f"row {row.name}: {resolved.problem}"))
            continue
        runs = []
        for seed in range(seeds):
            run_dir = out / RUNS_DIR / row.name / f"seed_{seed}"
            overrides = shared + [format_override("seed", seed)]
            prefit_store = None
            if row.prefit:
                prefit_store = out / PREFIT_DIR / row.name / "fits.lmdb"
                overrides.append(format_override("store", str(run_dir / "fits.lmdb")))
            runs.append(
                RunSpec(row.name, seed, run_dir, config, overrides, resolved.num_rounds or 1, prefit_store)
            )
        plans.append(RowPlan(row, config, runs))
    return plans


def select_rows(experiment: Experiment, names: str | None) -> set[str] | None:
    """The row names of `--rows a,b` (None: all rows); an unknown name is one sentence listing them."""
    if names is None:
        return None
    chosen = {name.strip() for name in names.split(",") if name.strip()}
    known = [row.name for row in experiment.rows]
    unknown = sorted(chosen - set(known))
    if unknown or not chosen:
        raise UserError(
            f"--rows {names!r}: {', '.join(unknown) or 'no row'} is not a row of {experiment.name}; "
            f"its rows are {', '.join(known)}."
        )
    return chosen


def plans_of_rows(plans: list[RowPlan], rows: set[str] | None) -> list[RowPlan]:
    """The plans of the rows in `rows` (all of them when None), in plan order."""
    return [plan for plan in plans if rows is None or plan.row.name in rows]


def run_state(spec: RunSpec) -> str:
    """finished (its last round's metrics.json exists), resumable (`last.pt`) or fresh."""
    if spec.final_metrics.is_file():
        return FINISHED
    if (spec.run_dir / LAST_CHECKPOINT).is_file():
        return RESUMABLE
    return FRESH


def check_record(spec: RunSpec) -> None:
    """A run folder made for other overrides (another --quick, --seeds layout or plan) is not reused."""
    record = spec.run_dir / RUN_RECORD
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("overrides") != spec.overrides or saved.get("config") != str(spec.config):
            raise UserError(
                f"Run folder {spec.run_dir} was made with other settings (see {record}); pass "
                "another --out, or delete that folder to rerun it with these."
            )
    elif spec.run_dir.is_dir() and (
        (spec.run_dir / LAST_CHECKPOINT).exists() or any(spec.run_dir.glob("round_*"))
    ):
        raise UserError(
            f"Run folder {spec.run_dir} holds a run that `spin experiment` did not start; "
            "pass another --out."
        )


def train_command(spec: RunSpec, state: str) -> list[str]:
    cli = [sys.executable, "-m", "spin.cli.main", "train"]
    if state == RESUMABLE:
        return cli + ["--resume", str(spec.run_dir)]
    return cli + ["--config", str(spec.config), "--run-dir", str(spec.run_dir), *spec.overrides]


def _child_setup() -> None:
    """In the child, before exec: SIGINT back to its default, so `_stop`'s SIGINT reaches the trainer
    even when the runner was started in the background (`nohup ... &` ignores SIGINT, and an ignored
    signal stays ignored across exec); and be killed when the runner dies (Linux), so no run trains on
    alone."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (the trainer closes its actors, Ray and wandb), then SIGKILL after STOP_GRACE_S."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


_ERROR_LINE = re.compile(r"^(error:|[A-Za-z_.]*(Error|Exception)\b)")


def last_line(path: Path) -> str:
    """The error a log ends with (the CLI's one-line `error:`, or a traceback's last exception line),
    else its last non-empty line; without terminal colours."""
    if not path.is_file():
        return ""
    lines = [_ANSI.sub("", line).strip() for line in path.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    return errors[-1] if errors else (lines[-1] if lines else "")


@dataclass(frozen=True)
class Outcome:
    status: str  # finished, failed, timeout
    seconds: float
    message: str = ""


def launch(
    command: list[str], log_path: Path, timeout_s: float | None, on_poll: Callable[[], None] | None = None
) -> Outcome:
    """Run `command` with stdout+stderr appended to `log_path`, bounded by `timeout_s`."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="200")  # wide: errors stay on one line
    env.setdefault("OMP_NUM_THREADS", "1")
    started = time.monotonic()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_child_setup,
        )
        try:
            while True:
                try:
                    proc.wait(timeout=POLL_S)
                    break
                except subprocess.TimeoutExpired:
                    if on_poll is not None:
                        on_poll()
                    if timeout_s is not None and time.monotonic() - started > timeout_s:
                        _stop(proc)
                        return Outcome(
                            "timeout",
                            time.monotonic() - started,
                            f"stopped after the per-run timeout of {timeout_s:g} s",
                        )
        except BaseException:
            _stop(proc)
            raise
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        return Outcome("failed", seconds, last_line(log_path) or f"exit status {proc.returncode}")
    return Outcome("finished", seconds)


class Runner:
    """Runs the plans' runs in order with a progress display; `log` lines also go to experiment.log."""

    def __init__(self, out: Path, timeout_s: float | None = None, console: Console | None = None,
                 reuse: list[Path] | None = None):
        self.out = out.resolve()
        self.timeout_s = timeout_s
        self.console = console or Console()
        self.outcomes: dict[tuple[str, int], Outcome] = {}
        self.reuse = [Path(folder).resolve() for folder in reuse or []]
        self._reusable: dict[str, Path] | None = None  # finished runs of the --reuse folders, read once

    def log(self, message: str) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with (self.out / LOG_FILE).open("a") as f:
            f.write(f"{stamp} {message}\n")
        self.console.print(message, highlight=False, markup=False)

    def run(self, plans: list[RowPlan], rows: set[str] | None = None) -> dict[tuple[str, int], Outcome]:
        """Every run of `plans` (only those of `rows` when given: another runner may be running the
        rest into the same folder, since runs of different rows share no files)."""
        plans = plans_of_rows(plans, rows)
        for plan in plans:
            if plan.problem:
                self.log(f"unavailable {plan.problem}")
            for spec in plan.runs:
                check_record(spec)
        specs = [spec for plan in plans for spec in plan.runs]
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task("runs", total=len(specs), info="")
            self.console = progress.console
            for plan in plans:
                for spec in plan.runs:
                    self._one(plan, spec, progress, task)
                    progress.advance(task)
        return self.outcomes

    def _one(self, plan: RowPlan, spec: RunSpec, progress: Progress, task) -> None:
        state = run_state(spec)
        if state == FINISHED:
            self.log(f"skip {spec.label}: finished ({spec.final_metrics.relative_to(self.out)})")
            return
        if state == FRESH:
            if spec.run_dir.exists():
                shutil.rmtree(spec.run_dir)  # a start that never reached its first checkpoint
            if self.link_identical(spec):
                return
            if spec.prefit_store is not None and not self._ensure_prefit(plan, spec):
                return
            spec.run_dir.mkdir(parents=True)
            if spec.prefit_store is not None:
                _copy_store(spec.prefit_store, spec.run_dir / "fits.lmdb")
            (spec.run_dir / RUN_RECORD).write_text(json.dumps(_record(spec), indent=2))
        self.log(
            f"{'resume' if state == RESUMABLE else 'start'} {spec.label} in "
            f"{spec.run_dir.relative_to(self.out)}"
        )

        def poll() -> None:
            done = len(list(spec.run_dir.glob(f"round_*/{METRICS_FILE}")))
            progress.update(
                task, info=f"{spec.label}: round {min(done + 1, spec.num_rounds)}/{spec.num_rounds}"
            )

        outcome = launch(train_command(spec, state), spec.run_dir / TRAIN_LOG, self.timeout_s, poll)
        if outcome.status == "finished" and not spec.final_metrics.is_file():
            outcome = Outcome(
                "failed",
                outcome.seconds,
                f"ended without {spec.final_metrics.name} of round {spec.num_rounds}",
            )
        self.outcomes[(spec.row, spec.seed)] = outcome
        suffix = f": {outcome.message}" if outcome.message else ""
        self.log(f"{outcome.status} {spec.label} in {outcome.seconds:.0f} s{suffix}")

    def link_identical(self, spec: RunSpec) -> bool:
        """Link `spec` to an identical finished run of the --reuse folders; False when there is none.
        Rows with static fits are never shared: each run's store is its own copy."""
        if not self.reuse or spec.prefit_store is not None:
            return False
        if self._reusable is None:
            self._reusable = {}
            for folder in reversed(self.reuse):  # the first folder named wins
                self._reusable.update(finished_runs(folder))
        source = identical_run(spec.config, spec.overrides, self._reusable)
        if source is None:
            return False
        link_run(source, spec.run_dir, _record(spec))
        self.outcomes[(spec.row, spec.seed)] = Outcome("finished", 0.0, f"reused {source}")
        self.log(f"reuse {spec.label}: the same run as {source}")
        return True

    def _ensure_prefit(self, plan: RowPlan, spec: RunSpec) -> bool:
        """Static fits for the row, made once (`spin fits init` from the mean pose); False on failure."""
        assert spec.prefit_store is not None
        folder = spec.prefit_store.parent
        done = folder / "done.json"
        if done.is_file():
            return True
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        targets, options = prefit_targets(spec.config, spec.overrides)
        for target in targets:
            self.log(
                f"prefit {plan.row.name}: fitting {target.annotations.name} from the mean pose into "
                f"{spec.prefit_store.relative_to(self.out)}"
            )
            command = [
                sys.executable,
                "-m",
                "spin.cli.main",
                "fits",
                "init",
                "--data",
                str(target.annotations),
                "--store",
                str(spec.prefit_store),
                "--dataset",
                target.dataset,
                *options,
            ]
            outcome = launch(command, folder / "fits_init.log", self.timeout_s)
            if outcome.status != "finished":
                self.outcomes[(spec.row, spec.seed)] = Outcome(
                    outcome.status, outcome.seconds, f"prefit: {outcome.message}"
                )
                self.log(f"{outcome.status} prefit {plan.row.name}: {outcome.message}")
                return False
        done.write_text(json.dumps({"targets": [str(t.annotations) for t in targets], "options": options}))
        return True


def _record(spec: RunSpec) -> dict[str, object]:
    """What `experiment_run.json` holds: the run's row, seed, config and overrides."""
    return {"row": spec.row, "seed": spec.seed, "config": str(spec.config), "overrides": spec.overrides}


def _copy_store(source: Path, dest: Path) -> None:
    """A consistent copy of a closed store (LMDB's compacting copy, through the store's own API)."""
    from store import FitsStore

    store = FitsStore(source, readonly=True)
    try:
        store.snapshot(dest)
    finally:
        store.close()
