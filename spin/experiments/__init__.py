"""`spin experiment`: plans (rows × seeds of `spin train` runs), a resumable runner, results and plots."""

from spin.experiments.catalog import EXPERIMENT_NAMES, get_experiment
from spin.experiments.plan import (
    DEFAULT_SEEDS,
    QUICK_OVERRIDES,
    QUICK_SEEDS,
    Claim,
    Experiment,
    Metric,
    Row,
    load_plan_file,
)
from spin.experiments.plots import write_plots
from spin.experiments.results import collect, write_results
from spin.experiments.runner import (
    RowPlan,
    Runner,
    RunSpec,
    expand,
    plans_of_rows,
    run_state,
    select_rows,
    train_command,
)
from spin.experiments.stats import Summary, Verdict, decide, summarize

__all__ = [
    "DEFAULT_SEEDS",
    "EXPERIMENT_NAMES",
    "QUICK_OVERRIDES",
    "QUICK_SEEDS",
    "Claim",
    "Experiment",
    "Metric",
    "Row",
    "RowPlan",
    "RunSpec",
    "Runner",
    "Summary",
    "Verdict",
    "collect",
    "decide",
    "expand",
    "get_experiment",
    "load_plan_file",
    "plans_of_rows",
    "run_state",
    "select_rows",
    "summarize",
    "train_command",
    "write_plots",
    "write_results",
]
