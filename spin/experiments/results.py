"""An experiment's results from its run folders: `results.json` (per-seed metrics, mean, std, n) and
`results.md` (the table, mean ± std, and each claim's verdict)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from spin.experiments.plan import Experiment, Metric
from spin.experiments.reuse import reused_from
from spin.experiments.runner import RESUMABLE, Outcome, RowPlan, run_state
from spin.experiments.stats import Summary, decide, summarize

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def read_metric(metrics: dict[str, Any], key: str) -> float | None:
    """The number at dotted `key` of a metrics.json object; None when absent or not a finite number."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def collect(
    experiment: Experiment,
    plans: list[RowPlan],
    outcomes: dict[tuple[str, int], Outcome] | None = None,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The results object: one entry per row (runs with their metrics, summaries), then the claims."""
    outcomes = outcomes or {}
    rows = []
    for plan in plans:
        runs = []
        for spec in plan.runs:
            entry: dict[str, Any] = {"seed": spec.seed, "run_dir": str(spec.run_dir)}
            if spec.final_metrics.is_file():
                data = json.loads(spec.final_metrics.read_text())
                entry.update(
                    status="finished",
                    metrics={m.key: read_metric(data, m.key) for m in experiment.metrics},
                    elapsed_s=read_metric(data, "elapsed_s"),
                    # every number of the final round, so metrics a plan does not name are kept too
                    final_round={k: read_metric(data, k) for k in data if read_metric(data, k) is not None},
                )
                source = reused_from(spec.run_dir)
                if source:
                    entry["reused_from"] = source
            else:
                outcome = outcomes.get((spec.row, spec.seed))
                status = (
                    outcome.status
                    if outcome
                    else ("unfinished" if run_state(spec) == RESUMABLE else "not run")
                )
                entry.update(status=status, metrics={}, message=outcome.message if outcome else "")
            runs.append(entry)
        finished = [r for r in runs if r["status"] == "finished"]
        summary = {
            m.key: summarize(r["metrics"].get(m.key) for r in finished).to_dict()
            for m in experiment.metrics
        }
        status = (
            "unavailable"
            if plan.problem
            else ("complete" if runs and len(finished) == len(runs) else "partial")
        )
        rows.append(
            {
                "name": plan.row.name,
                "status": status,
                "problem": plan.problem,
                "needs": plan.row.needs,
                "overrides": plan.row.overrides,
                "config": str(plan.config),
                "series": plan.row.series,
                "x": plan.row.x,
                "runs": runs,
                "summary": summary,
            }
        )
    claims = decide_claims(experiment, rows)
    return {
        "experiment": experiment.name,
        "mirrors": experiment.mirrors,
        "description": experiment.description,
        "x_label": experiment.x_label,
        "settings": settings or {},
        "metrics": [vars_of(m) for m in experiment.metrics],
        "rows": rows,
        "claims": claims,
    }


def decide_claims(experiment: Experiment, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim of `experiment` with its verdict, from the rows' summaries (results.json's rows)."""
    by_name = {row["name"]: row for row in rows}
    claims = []
    for claim in experiment.claims:
        metric = experiment.metric(claim.metric)
        better, worse = (
            summarize_dict(by_name[n]["summary"][claim.metric]) for n in (claim.better, claim.worse)
        )
        verdict = decide(better, worse, metric.lower_is_better, claim.kind)
        claims.append(
            {
                "text": claim.text,
                "better": claim.better,
                "worse": claim.worse,
                "metric": claim.metric,
                "kind": claim.kind,
                **verdict.to_dict(),
            }
        )
    return claims


def summarize_dict(values: dict[str, Any]) -> Summary:
    return Summary(**values)


def vars_of(metric: Metric) -> dict[str, Any]:
    return {
        "key": metric.key,
        "label": metric.label,
        "unit": metric.unit,
        "lower_is_better": metric.lower_is_better,
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    magnitude = abs(value)
    return f"{value:.1f}" if magnitude >= 10 else f"{value:.2f}" if magnitude >= 1 else f"{value:.3f}"


def mean_std(summary: dict[str, Any]) -> str:
    if summary["mean"] is None:
        return "—"
    spread = f" ± {fmt(summary['std'])}" if summary["std"] is not None else ""
    return f"{fmt(summary['mean'])}{spread}"


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    """results.md: the table (mean ± std over finished seeds, n), the claims, what did not run."""
    metrics = results["metrics"]
    settings = results["settings"]
    lines = [
        f"# {results['experiment']}",
        "",
        f"Mirrors: {results['mirrors']}.",
        "",
        results["description"],
        "",
    ]
    if settings.get("command"):
        lines += [f"Command: `{settings['command']}`", ""]
    if settings:
        lines += [
            f"Seeds: {settings.get('seeds')} · quick: {settings.get('quick')} · mean ± standard deviation "
            "over the seeds that finished (n).",
            "",
        ]
    header = ["row", "n"] + [f"{m['label']} ({m['unit']})" if m["unit"] else m["label"] for m in metrics]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        if row["status"] == "unavailable":
            cells = [row["name"], "0"] + ["n/a"] * len(metrics)
        else:
            n = max((row["summary"][m["key"]]["n"] for m in metrics), default=0)
            cells = [row["name"], f"{n}/{len(row['runs'])}"] + [
                mean_std(row["summary"][m["key"]]) for m in metrics
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if results["claims"]:
        lines += [
            "",
            "## Claims",
            "",
            "A claim is reproduced when the advantage exceeds twice the standard error of the difference "
            "over seeds (`no worse` claims: when it is not below minus twice that).",
            "",
            "| claim | rows | metric | advantage ± se | verdict |",
            "|---|---|---|---|---|",
        ]
        for claim in results["claims"]:
            se = f" ± {fmt(claim['se'])}" if claim["se"] is not None else ""
            kind = " (no worse)" if claim["kind"] == "no_worse" else ""
            lines.append(
                f"| {claim['text']} | {claim['better']} vs {claim['worse']} | {claim['metric']}{kind} | "
                f"{fmt(claim['advantage'])}{se} | {claim['decision']} |"
            )
    unavailable = [row for row in results["rows"] if row["status"] == "unavailable"]
    if unavailable:
        lines += ["", "## Rows that cannot run yet", ""] + [f"- {row['problem']}" for row in unavailable]
    problems = [
        (row["name"], run)
        for row in results["rows"]
        for run in row["runs"]
        if run["status"] not in ("finished",)
    ]
    if problems:
        lines += ["", "## Runs without results", ""]
        lines += [
            f"- {name} seed {run['seed']}: {run['status']}"
            + (f" — {run['message']}" if run.get("message") else "")
            for name, run in problems
        ]
    shared = [(row["name"], run) for row in results["rows"] for run in row["runs"] if run.get("reused_from")]
    if shared:
        lines += ["", "## Runs reused from other experiment folders (`--reuse`)", ""]
        lines += [f"- {name} seed {run['seed']}: {run['reused_from']}" for name, run in shared]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict[str, Any], plots: list[str]) -> tuple[Path, Path]:
    """results.json and results.md in `out`, each written whole (temporary name + rename)."""
    paths = []
    for name, text in (
        (RESULTS_JSON, json.dumps(results, indent=2)),
        (RESULTS_MD, markdown(results, plots)),
    ):
        path = out / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        paths.append(path)
    return paths[0], paths[1]
