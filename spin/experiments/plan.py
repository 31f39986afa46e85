"""Experiment plans as data: rows of `spin train` overrides, seeds, metrics and the claims they test.

An `Experiment` is a table of a paper: one `Row` per line of the table, each a set of `key=value`
overrides on a training config; every seed of a row is one run (`seed=K`). `--quick` shrinks every
run (`QUICK_OVERRIDES`, `QUICK_SEEDS`) for checks that must finish in minutes. A plan can also be
written as YAML (`load_plan_file`), so users run their own tables with the same runner.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spin.errors import UserError

DEFAULT_SEEDS = 3  # the fewest that give a standard error of a difference over seeds with one spare
QUICK_SEEDS = 2
QUICK_OVERRIDES: dict[str, Any] = {
    "rounds.num_rounds": 2,
    "rounds.steps_per_round": 60,
    "rounds.checkpoint_every": 30,
}
CLAIM_KINDS = ("better", "no_worse")


@dataclass(frozen=True)
class Metric:
    """A number read from the final round's metrics.json. `key` may be dotted (`train_loss.betas`)."""

    key: str
    label: str
    unit: str = ""
    lower_is_better: bool = True


@dataclass(frozen=True)
class Row:
    """One line of an experiment's table.

    config None = the base config (`--config`, else configs/default.yaml). `needs` names the
    feature a row waits for (its config keys may not exist yet). `prefit`: fill the run's store
    with fits from the mean pose (`spin fits init`) before training; with `fitting.mode=off` those
    static fits supervise and are never updated. `series` and `x` place the row on a curve.
    """

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    needs: str | None = None
    prefit: bool = False
    series: str | None = None
    x: float | None = None


@dataclass(frozen=True)
class Claim:
    """A seed paper's claim as a comparison of two rows on one metric.

    kind `better`: row `better` beats row `worse` by more than twice the standard error of the
    difference over seeds. kind `no_worse`: `better` is not worse than `worse` by more than that.
    """

    text: str
    better: str
    worse: str
    metric: str
    kind: str = "better"


@dataclass(frozen=True)
class Experiment:
    """A named set of rows (each seed a run), the metrics reported and the claims tested."""

    name: str
    description: str
    mirrors: str
    rows: list[Row]
    metrics: list[Metric]
    claims: list[Claim] = field(default_factory=list)
    x_label: str = ""  # what `Row.x` measures, for curves
    quick_overrides: dict[str, Any] = field(default_factory=lambda: dict(QUICK_OVERRIDES))

    def __post_init__(self) -> None:
        names = [row.name for row in self.rows]
        if not names:
            raise UserError(f"Experiment {self.name!r} has no rows; list at least one under `rows`.")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UserError(
                f"Experiment {self.name!r} names row(s) {', '.join(duplicates)} twice; "
                "give every row its own name."
            )
        for row in self.rows:
            if not row.name or "/" in row.name or row.name.startswith("."):
                raise UserError(
                    f"Experiment {self.name!r} has a row named {row.name!r}; use a non-empty "
                    "name without '/' that does not start with '.'."
                )
        metric_keys = {m.key for m in self.metrics}
        for claim in self.claims:
            missing = [r for r in (claim.better, claim.worse) if r not in names]
            if missing:
                raise UserError(
                    f"Experiment {self.name!r}: claim {claim.text!r} names row(s) "
                    f"{', '.join(missing)} that the plan does not have."
                )
            if claim.metric not in metric_keys:
                raise UserError(
                    f"Experiment {self.name!r}: claim {claim.text!r} uses metric "
                    f"{claim.metric!r}, which is not among its metrics."
                )
            if claim.kind not in CLAIM_KINDS:
                raise UserError(
                    f"Experiment {self.name!r}: claim {claim.text!r} has kind {claim.kind!r}; "
                    f"use one of {', '.join(CLAIM_KINDS)}."
                )

    def metric(self, key: str) -> Metric:
        return next(m for m in self.metrics if m.key == key)

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_override(key: str, value: Any) -> str:
    """`key=value` as `spin train` parses it (YAML): strings quoted so `off` stays a string."""
    if isinstance(value, str):
        return f"{key}={json.dumps(value)}"
    if value is None:
        return f"{key}=null"
    return f"{key}={json.dumps(value)}"  # numbers, booleans, lists and maps are valid YAML as JSON


def format_overrides(values: dict[str, Any]) -> list[str]:
    return [format_override(k, v) for k, v in values.items()]


def load_plan_file(path: Path) -> Experiment:
    """An `Experiment` from a YAML file with the dataclasses' fields (rows, metrics, claims)."""
    if not path.is_file():
        raise UserError(f"Plan file {path} does not exist; pass a built-in experiment name or a YAML plan.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(
            f"Plan file {path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax."
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"Plan file {path} must hold a mapping with name, rows and metrics.")
    try:
        rows = [Row(**row) for row in data.get("rows") or []]
        metrics = [
            Metric(**m) if isinstance(m, dict) else Metric(key=str(m), label=str(m))
            for m in data.get("metrics") or [{"key": "pa_mpjpe", "label": "PA-MPJPE", "unit": "mm"}]
        ]
        claims = [Claim(**c) for c in data.get("claims") or []]
        extra = {k: data[k] for k in ("quick_overrides", "x_label") if k in data}
        return Experiment(
            name=str(data.get("name") or path.stem),
            description=str(data.get("description", "")),
            mirrors=str(data.get("mirrors", "")),
            rows=rows,
            metrics=metrics,
            claims=claims,
            **extra,
        )
    except TypeError as err:
        raise UserError(
            f"Plan file {path} has a field the plan schema does not know ({err}); "
            "rows take name, overrides, config, needs, prefit, series, x."
        ) from None
