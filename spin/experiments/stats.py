"""Statistics over seeds: mean, standard deviation, standard error, and whether a claim is reproduced.

A difference between two rows counts when it exceeds twice the standard error of the difference,
se_diff = sqrt(s_a²/n_a + s_b²/n_b) (Welch's form, sample standard deviations): about a 95% test,
and with the few seeds an experiment affords, the honest resolution of one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

SIGNIFICANCE = 2.0  # a difference counts when it exceeds this many standard errors

REPRODUCED = "reproduced"
NOT_SHOWN = "not shown"  # within the seed spread
OPPOSITE = "opposite"  # significant the other way
UNDETERMINED = "undetermined"  # too few seeds or missing values


@dataclass(frozen=True)
class Summary:
    """mean and sample standard deviation (ddof 1) of the finite values; std/stderr None when n < 2."""

    n: int
    mean: float | None
    std: float | None
    stderr: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finite_values(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarize(values: Iterable[float | None]) -> Summary:
    """Summary of per-seed values; None and NaN/Inf (a run without the metric) are left out."""
    xs = finite_values(values)
    n = len(xs)
    if n == 0:
        return Summary(0, None, None, None)
    mean = math.fsum(xs) / n
    if n < 2:
        return Summary(n, mean, None, None)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return Summary(n, mean, std, std / math.sqrt(n))


@dataclass(frozen=True)
class Verdict:
    """advantage: how much `better` beats `worse` (positive = the claim's direction), in the metric's
    unit; se: standard error of that difference; decision: one of the constants above."""

    advantage: float | None
    se: float | None
    decision: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(better: Summary, worse: Summary, lower_is_better: bool = True, kind: str = "better") -> Verdict:
    """Is the claim "`better` beats `worse`" (kind `better`) or "`better` is no worse than `worse`"
    (kind `no_worse`) reproduced over seeds?

    better: reproduced when the advantage exceeds SIGNIFICANCE·se, opposite when it is below
    −SIGNIFICANCE·se, else not shown. no_worse: reproduced unless the advantage is below
    −SIGNIFICANCE·se (then opposite). Undetermined when either side has fewer than 2 seeds.
    """
    if better.mean is None or worse.mean is None:
        return Verdict(None, None, UNDETERMINED)
    advantage = (worse.mean - better.mean) if lower_is_better else (better.mean - worse.mean)
    if better.stderr is None or worse.stderr is None:
        return Verdict(advantage, None, UNDETERMINED)
    se = math.hypot(better.stderr, worse.stderr)
    margin = SIGNIFICANCE * se
    if advantage < -margin:
        decision = OPPOSITE
    elif kind == "no_worse" or advantage > margin:
        decision = REPRODUCED
    else:
        decision = NOT_SHOWN
    return Verdict(advantage, se, decision)
