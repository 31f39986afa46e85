"""`spin experiment NAME --out DIR [--seeds N] [--quick]`: a named set of training runs, then tables,
claims and plots. The lead mounts `experiment_command` on the `spin` app; `python -m
spin.cli.experiment` runs it on its own."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _load(name: str):
    from spin.experiments import get_experiment, load_plan_file

    path = Path(name)
    if name.endswith((".yaml", ".yml")) or path.is_file():
        return load_plan_file(path)
    return get_experiment(name)


def _list_table() -> Table:
    from spin.experiments import EXPERIMENT_NAMES, get_experiment

    table = Table(title="experiments")
    for column in ("name", "mirrors", "rows", "needs"):
        table.add_column(column)
    for name in EXPERIMENT_NAMES:
        experiment = get_experiment(name)
        needs = sorted({row.needs for row in experiment.rows if row.needs})
        table.add_row(name, experiment.mirrors, str(len(experiment.rows)), "; ".join(needs) or "—")
    return table


def _summary_table(results: dict) -> Table:
    from spin.experiments.results import mean_std

    table = Table(title=f"{results['experiment']} (mean ± std over seeds)")
    table.add_column("row")
    table.add_column("n", justify="right")
    for metric in results["metrics"]:
        table.add_column(metric["label"], justify="right")
    for row in results["rows"]:
        if row["status"] == "unavailable":
            table.add_row(row["name"], "0", *["n/a"] * len(results["metrics"]))
            continue
        n = max((row["summary"][m["key"]]["n"] for m in results["metrics"]), default=0)
        table.add_row(
            row["name"],
            f"{n}/{len(row['runs'])}",
            *[mean_std(row["summary"][m["key"]]) for m in results["metrics"]],
        )
    return table


def experiment_command(
    name: Optional[str] = typer.Argument(
        None, help="Built-in experiment (see --list) or a YAML plan file (rows, metrics, claims)."
    ),
    overrides: Optional[list[str]] = typer.Argument(
        None,
        help="key=value overrides for every run (a row's own overrides win), e.g. wandb.enabled=false.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Experiment folder: runs, results, plots."
    ),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", min=1, help="Seeds per row, each a run (default: 3; 2 with --quick)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A smaller version of every run (fewer steps, 2 seeds)."
    ),
    config: Optional[Path] = typer.Option(
        None, "--config", "-c", help="Base config of rows that name none (default: configs/default.yaml)."
    ),
    timeout: Optional[float] = typer.Option(
        None,
        "--timeout",
        min=1.0,
        help="Stop a run (or prefit) after this many seconds; it counts as failed.",
    ),
    rows: Optional[str] = typer.Option(
        None,
        "--rows",
        help="Run only these rows (comma-separated names); results still cover every row run so far. "
        "Two commands with disjoint --rows may run into the same --out at once.",
    ),
    reuse: Optional[list[Path]] = typer.Option(
        None,
        "--reuse",
        help="Another experiment folder (repeatable): a run here that trains exactly as one finished "
        "there (same resolved config and seed) is linked to it, not trained again.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print each run's command and stop."),
    report_only: bool = typer.Option(
        False, "--report-only", help="Write results and plots from the runs already in --out; start none."
    ),
    list_experiments: bool = typer.Option(False, "--list", help="List the built-in experiments."),
) -> None:
    """Run a named set of training runs (one per row and seed, resumable), then write DIR/results.json,
    DIR/results.md (mean ± std, claims reproduced or not) and PNG plots."""
    from spin.errors import UserError
    from spin.experiments import (
        DEFAULT_SEEDS,
        QUICK_SEEDS,
        Runner,
        collect,
        expand,
        plans_of_rows,
        select_rows,
        train_command,
        write_plots,
        write_results,
    )

    if list_experiments:
        console.print(_list_table())
        return
    if name is None or out is None:
        raise UserError(
            "spin experiment needs an experiment and --out DIR, e.g. "
            "`spin experiment spin-table1 --out runs/table1`; `--list` shows the experiments."
        )
    experiment = _load(name)
    seeds = seeds or (QUICK_SEEDS if quick else DEFAULT_SEEDS)
    extra = list(overrides or [])
    plans = expand(experiment, out, seeds, quick=quick, base_config=config, extra=extra)
    selected = select_rows(experiment, rows)
    settings = {
        "seeds": seeds,
        "quick": quick,
        "timeout_s": timeout,
        "overrides": extra,
        "reuse": [str(folder) for folder in reuse or []],
        "command": "spin experiment "
        + shlex.join(sys.argv[2:] if sys.argv[1:2] == ["experiment"] else sys.argv[1:]),
    }
    if dry_run:
        for plan in plans_of_rows(plans, selected):
            if plan.problem:
                console.print(f"[yellow]unavailable[/] {plan.problem}", highlight=False)
            for spec in plan.runs:
                console.print(shlex.join(train_command(spec, "fresh")), highlight=False, soft_wrap=True)
        return
    out.mkdir(parents=True, exist_ok=True)
    outcomes = {}
    if not report_only:
        outcomes = Runner(out, timeout_s=timeout, console=console, reuse=reuse).run(plans, selected)
    results = collect(experiment, plans, outcomes, settings)
    plots = write_plots(out, results)
    json_path, md_path = write_results(out, results, plots)
    console.print(_summary_table(results))
    for claim in results["claims"]:
        console.print(f"{claim['decision']:>12}  {claim['text']}", highlight=False)
    console.print(f"results: {json_path}\ntable: {md_path}" + "".join(f"\nplot: {p}" for p in plots))
    failed = [key for key, outcome in outcomes.items() if outcome.status != "finished"]
    if failed:
        console.print(
            f"[red]{len(failed)} run(s) did not finish[/]; see their train.log; rerun the same "
            "command to retry them (finished runs are skipped)."
        )
        raise typer.Exit(1)


def _standalone() -> None:
    """`python -m spin.cli.experiment ...`: the command alone, user errors as one line."""
    from spin.errors import UserError
    from store.errors import StoreError

    app = typer.Typer(add_completion=False)
    app.command()(experiment_command)
    try:
        app()
    except (UserError, StoreError) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    _standalone()
