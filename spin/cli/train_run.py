"""`spin train` behind the CLI: a Trainer with a progress bar, a clean stop on SIGINT/SIGTERM, then
the rounds table."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from spin.config import TrainConfig
from spin.progress import progress_bar, report_console
from spin.training.rounds import PLOT_FILE, load_rounds, plot_rounds
from spin.training.trainer import Trainer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(trainer: Trainer) -> Iterator[None]:
    """SIGINT/SIGTERM ask `trainer` to stop after its current step (writing last.pt); a second one
    interrupts at once. The previous handlers come back on exit."""
    previous = {}

    def handler(signum, frame) -> None:
        if trainer.stop_signal is not None:
            raise KeyboardInterrupt
        trainer.request_stop(signum)

    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no signal handling, the default behaviour stays
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_training(config: TrainConfig, run_dir: str | Path, resume: bool = False,
                 console: Console | None = None) -> list[dict]:
    """Train (or resume) the run in `run_dir`; print the rounds table and where things are."""
    console = console or report_console()
    run_dir = Path(run_dir)
    if config.distributed.enabled:
        return _run_distributed(config, run_dir, resume, console)
    with progress_bar("setting up", console=console) as bar:

        def on_step(trainer: Trainer) -> None:
            bar.update(completed=trainer.step, description=f"round {trainer.current_round_done}",
                       info=trainer.progress_info())

        def on_setup(description: str, done: int, total: int) -> None:
            bar.update(completed=done, total=total, description=description)

        with Trainer(config, run_dir, resume=resume, on_step=on_step, on_setup=on_setup) as trainer:
            bar.update(total=trainer.total_steps, completed=trainer.step, description="training")
            if trainer.scoring.get("unscored"):
                console.print(scoring_line(trainer.scoring), highlight=False)
            with stop_on_signals(trainer):
                trainer.train()
    if trainer.stopped_early:
        name = signal.Signals(trainer.stop_signal).name if trainer.stop_signal else "a stop request"
        console.print(f"stopped by {name} at step {trainer.step} of {trainer.total_steps} (last.pt written); "
                      f"continue with `spin train --resume {run_dir}`", highlight=False, soft_wrap=True)
        raise SystemExit(128 + trainer.stop_signal if trainer.stop_signal else 1)
    rounds = load_rounds(run_dir)
    console.print(rounds_table(rounds))
    plot = plot_rounds(rounds, run_dir / PLOT_FILE)
    console.print(f"run folder: {run_dir}\nplot: {plot}\nstore: {trainer.store_path}\n"
                  f"per-round checkpoints, store snapshots, overlays: {run_dir}/round_XXX/")
    if config.wandb.enabled:
        console.print(f"wandb run: {run_dir}/wandb (sync an offline run with `wandb sync`)")
    return rounds


def scoring_line(scoring: dict) -> str:
    """`scored 980 of 1000 imported fits (20 left unscored: too_few_keypoints 20)`."""
    failed = scoring.get("failed_by_reason") or {}
    line = f"scored {scoring['scored']} of {scoring['unscored']} imported fits"
    if failed:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(failed.items()))
        line += f" ({sum(failed.values())} left unscored: {reasons})"
    return line


def _run_distributed(config: TrainConfig, run_dir: Path, resume: bool, console: Console) -> list[dict]:
    """N data-parallel ranks under Ray Train (or torchrun); rank 0 writes the rounds; their table."""
    from spin.distributed.launch import launch

    dist_cfg = config.distributed
    console.print(f"training on {dist_cfg.num_workers} ranks (effective batch "
                  f"{dist_cfg.effective_batch(config.data.batch_size)})", highlight=False)
    launch(config, run_dir, resume=resume)
    rounds = load_rounds(run_dir)
    console.print(rounds_table(rounds))
    console.print(f"run folder: {run_dir}\nplot: {plot_rounds(rounds, run_dir / PLOT_FILE)}", highlight=False)
    return rounds


def _fmt(value: object, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def rounds_table(rounds: list[dict]) -> Table:
    """Rich table of round metrics (what `spin rounds` and the end of `spin train` print).

    valid fits: stored train fits under the threshold; train valid: train samples with one (a
    sample without a fit counts as not valid); improved: stored fits replaced by a better one;
    fitted: the round's offered fitting jobs that were fitted (— without fitting), dropped: those
    never fitted; fits MPJPE / PA-MPJPE: the stored fits against the hidden ground truth (synthetic
    data), shown when measured; rot. err / PCKh: NBF's mean joint-rotation error and PCKh@0.5 on the
    test split; adv. loss / D loss / D acc: HMR's adversarial prior (round means of its encoder
    loss, unweighted, its discriminator loss and accuracy), shown when the prior is on.
    """
    table = Table(title="rounds (test split: MPJPE / PA-MPJPE in mm)")
    columns = ["round", "step", "MPJPE", "PA-\nMPJPE", "valid\nfits", "train\nvalid", "fit\nloss",
               "fits\nimproved", "fitted", "dropped", "steps\n/s"]
    truth = any(r.get("fits_mpjpe") is not None for r in rounds)
    if truth:
        columns[4:4] = ["fits\nMPJPE", "fits PA-\nMPJPE"]
    nbf = any(r.get("joint_rotation_error") is not None or r.get("pckh") is not None for r in rounds)
    if nbf:
        columns[4:4] = ["rot.\nerr (rad)", "PCKh\n@0.5"]
    adversarial = any("adv/d_acc" in (r.get("extensions") or {}) for r in rounds)
    if adversarial:
        columns += ["adv.\nloss", "D\nloss", "D\nacc"]
    for column in columns:
        table.add_column(column, justify="right")
    for r in rounds:
        row = [str(r["round"]), str(r.get("step", "")), _fmt(r.get("mpjpe"), ".1f"),
               _fmt(r.get("pa_mpjpe"), ".1f"), _fmt(r.get("frac_valid"), ".1%"),
               _fmt(r.get("frac_valid_of_train"), ".1%"), _fmt(r.get("mean_fit_loss"), ".1f"),
               _fmt(r.get("fits_improved_in_round"), "d"), _fmt(r.get("fitted_share"), ".1%"),
               _fmt(r.get("fits_dropped_in_round"), "d"), _fmt(r.get("steps_per_s"), ".2f")]
        if truth:
            row[4:4] = [_fmt(r.get("fits_mpjpe"), ".1f"), _fmt(r.get("fits_pa_mpjpe"), ".1f")]
        if nbf:
            row[4:4] = [_fmt(r.get("joint_rotation_error"), ".3f"), _fmt(r.get("pckh"), ".1%")]
        if adversarial:
            ext = r.get("extensions") or {}
            row += [_fmt(ext.get("adv/e_loss"), ".3f"), _fmt(ext.get("adv/d_loss"), ".3f"),
                    _fmt(ext.get("adv/d_acc"), ".1%")]
        table.add_row(*row)
    return table
