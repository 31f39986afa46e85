"""Statistics over seeds: summaries and the claim decision (pure functions, property-based)."""

from __future__ import annotations

import math
import statistics

from hypothesis import assume, given
from hypothesis import strategies as st

from spin.experiments.stats import (
    NOT_SHOWN,
    OPPOSITE,
    REPRODUCED,
    UNDETERMINED,
    Summary,
    decide,
    summarize,
)

values = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
samples = st.lists(values, min_size=2, max_size=12)


@given(samples)
def test_summary_matches_the_sample_statistics(xs):
    s = summarize(xs)
    assert s.n == len(xs)
    assert math.isclose(s.mean, statistics.fmean(xs), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(s.std, statistics.stdev(xs), rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(s.stderr, s.std / math.sqrt(len(xs)), rel_tol=1e-12, abs_tol=1e-12)


@given(st.lists(st.one_of(values, st.none(), st.just(float("nan")), st.just(float("inf"))), max_size=10))
def test_missing_and_non_finite_values_are_left_out(xs):
    finite = [x for x in xs if x is not None and math.isfinite(x)]
    s = summarize(xs)
    assert s.n == len(finite)
    if not finite:
        assert s == Summary(0, None, None, None)
    elif len(finite) == 1:
        assert s.mean == finite[0] and s.std is None and s.stderr is None


@given(samples, samples)
def test_swapping_the_rows_swaps_reproduced_and_opposite(a, b):
    forward = decide(summarize(a), summarize(b))
    backward = decide(summarize(b), summarize(a))
    assert math.isclose(forward.advantage, -backward.advantage, abs_tol=1e-9)
    swap = {REPRODUCED: OPPOSITE, OPPOSITE: REPRODUCED, NOT_SHOWN: NOT_SHOWN}
    margin = 2 * forward.se
    assume(abs(abs(forward.advantage) - margin) > 1e-6 * (1 + margin))  # not on the boundary
    assert backward.decision == swap[forward.decision]


@given(samples, samples, st.floats(min_value=-1e3, max_value=1e3), st.floats(min_value=0.01, max_value=100))
def test_decision_is_invariant_to_shift_and_scale(a, b, shift, scale):
    before = decide(summarize(a), summarize(b))
    after = decide(summarize([scale * x + shift for x in a]), summarize([scale * x + shift for x in b]))
    margin = 2 * before.se
    assume(abs(abs(before.advantage) - margin) > 1e-6 * (1 + abs(before.advantage) + margin))
    assert after.decision == before.decision


@given(samples, st.floats(min_value=1.0, max_value=1e3))
def test_a_gap_larger_than_the_spread_is_reproduced(xs, gap_factor):
    spread = max(xs) - min(xs)
    gap = gap_factor * (spread + 1.0) * 10  # far beyond twice the standard error
    better = summarize(xs)
    worse = summarize([x + gap for x in xs])
    assert decide(better, worse).decision == REPRODUCED
    assert decide(worse, better).decision == OPPOSITE
    # higher-is-better metrics read the other way round
    assert decide(worse, better, lower_is_better=False).decision == REPRODUCED


def test_the_rule_is_twice_the_standard_error_of_the_difference():
    a, b = summarize([1.0, 3.0]), summarize([4.0, 6.0])  # std √2 each, se 1 each, se of diff √2
    verdict = decide(a, b)
    assert math.isclose(verdict.se, math.sqrt(2))
    assert verdict.advantage == 3.0 and verdict.decision == REPRODUCED  # 3 > 2√2 ≈ 2.83
    close = decide(summarize([1.0, 3.0]), summarize([3.5, 5.5]))  # 2.5 < 2.83
    assert close.decision == NOT_SHOWN
    # no worse: 2.5 worse is within 2.83, so "not worse" holds
    assert decide(summarize([3.5, 5.5]), summarize([1.0, 3.0]), kind="no_worse").decision == REPRODUCED


def test_no_worse_claims():
    same = decide(summarize([2.0, 2.2, 1.8]), summarize([2.1, 1.9, 2.0]), kind="no_worse")
    assert same.decision == REPRODUCED
    clearly_worse = decide(summarize([9.0, 9.1, 8.9]), summarize([2.1, 1.9, 2.0]), kind="no_worse")
    assert clearly_worse.decision == OPPOSITE


def test_one_seed_is_undetermined_but_keeps_the_difference():
    verdict = decide(summarize([1.0]), summarize([5.0, 6.0]))
    assert verdict.decision == UNDETERMINED and verdict.advantage == 4.5 and verdict.se is None
    assert decide(summarize([]), summarize([1.0, 2.0])).decision == UNDETERMINED
