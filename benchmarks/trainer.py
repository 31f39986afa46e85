"""Training steps/s with fitting off, async and sync: same config, same data, one run.

    .venv/bin/python benchmarks/trainer.py [--steps 40] [--warmup 5] [--config FILE] [key=value ...]

Each mode trains `warmup + steps` steps of the same config (data loading included, the end-of-round
evaluation excluded) and reports steps/s over the last `steps`, with the ratios async/off and
sync/off, and the fit coverage of the measured window: the share of the jobs offered in it that
were fitted, and those dropped. The window opens once the actors are up and the warm-up's jobs are
done (start-up is not counted as drops) and its jobs are drained at its end. Async runs the Ray
fitting actors beside the trainer; targets (issue 14): async ≥ 0.95× off with ≥ 95% fitted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from spin.config import TrainConfig  # noqa: E402
from spin.config_loading import load_config  # noqa: E402
from spin.training.rounds import coverage_base, fit_coverage  # noqa: E402
from spin.training.trainer import Trainer  # noqa: E402

MODES = ("off", "async", "sync")
DRAIN_S = 120.0  # bound on waiting for the actors' queued jobs at the window's edges


def measure(config_path: Path, overrides: list[str], mode: str, steps: int, warmup: int,
            work_dir: Path) -> dict:
    """Steps/s of one mode over `steps` steps after `warmup` steps."""
    config = load_config(TrainConfig, config_path, [
        *overrides, f'fitting.mode="{mode}"', "wandb.enabled=false", "rounds.num_rounds=1",
        f"rounds.steps_per_round={warmup + steps}", f"rounds.checkpoint_every={warmup + steps + 1}",
        "rounds.snapshot_store=false", "rounds.overlay_images=0", "rounds.eval_max_samples=1",
    ])
    stamps: dict[int, float] = {}
    opened: dict[str, int] = {}

    def on_step(trainer: Trainer) -> None:
        if trainer.step == warmup:
            # The window opens with the actors up and idle: their start-up and the warm-up's
            # backlog count neither as drops nor against the window's speed.
            trainer.fitting.drain(DRAIN_S)
            opened.update(coverage_base(trainer.fitting.stats()))
            stamps[warmup] = time.perf_counter()
        elif trainer.step == warmup + steps:
            stamps[warmup + steps] = time.perf_counter()

    with Trainer(config, work_dir / mode, on_step=on_step) as trainer:
        trainer.train()
        trainer.fitting.drain(DRAIN_S)
        fit = trainer.fitting.stats()
    seconds = stamps[warmup + steps] - stamps[warmup]
    coverage = fit_coverage(fit, opened)
    return {
        "mode": mode,
        "steps_per_s": steps / seconds,
        "samples_per_s": steps * config.data.batch_size / seconds,
        "fits_per_s": fit.get("fits_per_s"),
        "offered": coverage.get("fits_offered_in_round"),
        "fitted": coverage.get("fits_fitted_in_round"),
        "dropped": coverage.get("fits_dropped_in_round"),
        "fitted_share": coverage["fitted_share"],
        "staleness_steps": fit.get("staleness_steps"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "default.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()
    os.environ.setdefault("RAY_ADDRESS", "local")  # a fresh local Ray, never a running cluster

    work_dir = Path(tempfile.mkdtemp(prefix="spin-bench-trainer-"))
    try:
        results = {mode: measure(args.config, args.overrides, mode, args.steps, args.warmup, work_dir)
                   for mode in args.modes}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    off = results.get("off", {}).get("steps_per_s")
    ratios = {f"{mode}/off": results[mode]["steps_per_s"] / off for mode in results if off and mode != "off"}
    if args.json:
        print(json.dumps({"results": results, "ratios": ratios, "cpus": os.cpu_count()}))
        return
    title = f"trainer steps/s ({args.steps} steps after {args.warmup} warm-up; {os.cpu_count()} CPUs)"
    table = Table(title=title)
    columns = ("fitting", "steps/s", "samples/s", "× off", "fitted\nshare", "offered", "fitted", "dropped",
               "fits/s", "stale\nsteps")
    for column in columns:
        table.add_column(column, justify="right")

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    for mode, r in results.items():
        ratio = r["steps_per_s"] / off if off else None
        table.add_row(mode, fmt(r["steps_per_s"], ".2f"), fmt(r["samples_per_s"], ".1f"), fmt(ratio, ".2f"),
                      fmt(r["fitted_share"], ".1%"), fmt(r["offered"], "d"), fmt(r["fitted"], "d"),
                      fmt(r["dropped"], "d"), fmt(r["fits_per_s"], ".1f"), fmt(r["staleness_steps"], ".1f"))
    console = Console()
    if not console.is_terminal:  # a log file: no 80-column squeeze of the table
        console = Console(width=140)
    console.print(table)
    for name, value in ratios.items():
        share = results[name.split("/")[0]]["fitted_share"]
        print(f"{name}: {value:.2f}× speed, fitted share {fmt(share, '.1%')}")


if __name__ == "__main__":
    main()
