"""Training steps/s with fitting off, async and sync: same config, same data, one run.

    .venv/bin/python benchmarks/trainer.py [--steps 40] [--warmup 5] [--config FILE] [key=value ...]

Each mode trains `warmup + steps` steps of the same config (data loading included, the end-of-round
evaluation excluded) and reports steps/s over the last `steps`, with the ratios async/off and
sync/off. Async runs the Ray fitting actors beside the trainer: on a machine where the actors have
their own cores the target is async ≥ 0.9× off; on 2 shared cores the actors take CPU from the
trainer, and the printed ratio says by how much.
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
from spin.training.trainer import Trainer  # noqa: E402

MODES = ("off", "async", "sync")


def measure(config_path: Path, overrides: list[str], mode: str, steps: int, warmup: int,
            work_dir: Path) -> dict:
    """Steps/s of one mode over `steps` steps after `warmup` steps."""
    config = load_config(TrainConfig, config_path, [
        *overrides, f'fitting.mode="{mode}"', "wandb.enabled=false", "rounds.num_rounds=1",
        f"rounds.steps_per_round={warmup + steps}", f"rounds.checkpoint_every={warmup + steps + 1}",
        "rounds.snapshot_store=false", "rounds.overlay_images=0", "rounds.eval_max_samples=1",
    ])
    stamps: dict[int, float] = {}

    def on_step(trainer: Trainer) -> None:
        if trainer.step in (warmup, warmup + steps):
            stamps[trainer.step] = time.perf_counter()

    with Trainer(config, work_dir / mode, on_step=on_step) as trainer:
        trainer.train()
        fit = trainer.fitting.stats()
    seconds = stamps[warmup + steps] - stamps[warmup]
    return {
        "mode": mode,
        "steps_per_s": steps / seconds,
        "samples_per_s": steps * config.data.batch_size / seconds,
        "fits_per_s": fit.get("fits_per_s"),
        "fitted": fit.get("fitted"),
        "dropped": fit.get("dropped"),
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
    for column in ("fitting", "steps/s", "samples/s", "× off", "fits/s", "fitted", "dropped", "stale\nsteps"):
        table.add_column(column, justify="right")

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    for mode, r in results.items():
        ratio = r["steps_per_s"] / off if off else None
        table.add_row(mode, fmt(r["steps_per_s"], ".2f"), fmt(r["samples_per_s"], ".1f"), fmt(ratio, ".2f"),
                      fmt(r["fits_per_s"], ".1f"), fmt(r["fitted"], "d"), fmt(r["dropped"], "d"),
                      fmt(r["staleness_steps"], ".1f"))
    Console().print(table)
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")


if __name__ == "__main__":
    main()
