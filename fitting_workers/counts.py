"""The one set of fitting counters: what a batch, a pool, sync mode and `spin fit` report.

Counts are jobs (samples), never batches. `FitCounts` adds up with `+` (or `merge`), so an actor's
batch, the pool's running totals, a trainer's sync fitting and a whole-dataset fit all use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

_INT_FIELDS = ("offered", "fitted", "accepted", "improved", "valid", "dropped", "retried", "errors",
               "abandoned")
_FLOAT_FIELDS = ("loss_sum", "fit_seconds", "write_seconds")


@dataclass
class FitCounts:
    """Job counts of fitting.

    offered: jobs handed to fitting (pool: submitted); fitted: jobs SMPLify ran on (failed ones
    included); failed: failed fits by reason (`FitResult.failure_counts()`, plus `nonfinite_loss`),
    never offered to the store; accepted: written (better than the stored fit); improved: accepted
    over an existing fit; valid: usable fits under the SMPLify threshold; loss_sum: over the usable
    fits; fit_seconds / write_seconds: time in SMPLify / in `put_if_better`; dropped: never fitted
    (no room, or lost twice); retried: resubmitted after an actor died; errors: jobs of batches that
    raised (nothing of them was written); abandoned: still in flight at shutdown.
    """

    offered: int = 0
    fitted: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    accepted: int = 0
    improved: int = 0
    valid: int = 0
    loss_sum: float = 0.0
    fit_seconds: float = 0.0
    write_seconds: float = 0.0
    dropped: int = 0
    retried: int = 0
    errors: int = 0
    abandoned: int = 0

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())

    @property
    def usable(self) -> int:
        """Fits that were not failed (offered to the store)."""
        return self.fitted - self.failed_total

    @property
    def mean_loss(self) -> float:
        """Mean loss of the usable fits (NaN when there is none)."""
        return self.loss_sum / self.usable if self.usable else math.nan

    @property
    def frac_valid(self) -> float:
        return self.valid / self.fitted if self.fitted else 0.0

    @property
    def accepted_frac(self) -> float:
        return self.accepted / self.fitted if self.fitted else 0.0

    @property
    def improved_frac(self) -> float:
        return self.improved / self.fitted if self.fitted else 0.0

    def merge(self, other: FitCounts) -> FitCounts:
        """The sum of two counts (a new object; neither input changes)."""
        failed = dict(self.failed)
        for reason, count in other.failed.items():
            failed[reason] = failed.get(reason, 0) + count
        values: dict[str, Any] = {name: getattr(self, name) + getattr(other, name)
                                  for name in (*_INT_FIELDS, *_FLOAT_FIELDS)}
        return FitCounts(failed=failed, **values)

    __add__ = merge

    def as_dict(self) -> dict[str, Any]:
        """Flat, JSON-ready: every field (`failed` as the total), `failed_by_reason`, `mean_loss` and
        the fractions over `fitted`."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "failed"}
        out.update(failed=self.failed_total, failed_by_reason=dict(sorted(self.failed.items())),
                   mean_loss=self.mean_loss, frac_valid=self.frac_valid, accepted_frac=self.accepted_frac,
                   improved_frac=self.improved_frac)
        return out


def failed_text(counts: FitCounts) -> str:
    """`3 (too_few_keypoints 2, diverged 1)` — the failed fits and their reasons, for tables."""
    if not counts.failed_total:
        return "0"
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.failed.items()) if n)
    return f"{counts.failed_total} ({reasons})"
