"""The one fit path (`fit_and_offer`) on a real LMDB store, and the one set of counters (`FitCounts`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fitting_workers.counts import FitCounts, failed_text
from fitting_workers.fit_path import NONFINITE_LOSS, fit_and_offer
from fitting_workers.jobs import FitJobBatch, concat_jobs
from fitting_workers.smplify import FAILURE_REASONS, FitResult
from store import FitsStore


def jobs(n: int, step: int = 3, round: int = 2, with_cam: bool = True) -> FitJobBatch:
    return FitJobBatch(keys=[f"d/{i}" for i in range(n)], keypoints=np.zeros((n, 49, 3)),
                       pose=np.zeros((n, 72)), betas=np.zeros((n, 10)),
                       cam_t=np.ones((n, 3)) if with_cam else None, step=step, round=round)


def fitter_with(loss, failure):
    """A stand-in for SMPLify returning the given losses and failure codes (the fit is the start)."""

    def fit(batch: FitJobBatch) -> FitResult:
        n = len(batch)
        return FitResult(pose=batch.pose + 0.1, betas=batch.betas, cam_t=np.ones((n, 3), np.float32),
                         loss=np.asarray(loss, np.float32), failure=np.asarray(failure, np.int8))

    return fit


@pytest.fixture
def store(tmp_path):
    fits = FitsStore(tmp_path / "store")
    fits.declare_dataset("d", 8)
    yield fits
    fits.close()


def test_failed_fits_are_counted_by_reason_and_never_written(store):
    reasons = {name: i for i, name in enumerate(FAILURE_REASONS)}
    failure = [0, reasons["too_few_keypoints"], 0, reasons["diverged"], reasons["too_few_keypoints"], 0]
    loss = [5.0, 0.0, 30.0, 1.0, 0.0, np.nan]
    _, counts = fit_and_offer(fitter_with(loss, failure), store, jobs(6), threshold=20.0)
    assert counts.failed == {"too_few_keypoints": 2, "diverged": 1, NONFINITE_LOSS: 1}
    assert counts.fitted == counts.offered == 6 and counts.usable == 2
    assert counts.accepted == 2 and counts.improved == 0 and counts.valid == 1
    assert counts.loss_sum == pytest.approx(35.0) and counts.mean_loss == pytest.approx(17.5)
    got = store.get([f"d/{i}" for i in range(6)])
    assert got["present"].tolist() == [True, False, True, False, False, False]
    record = store.get(["d/0"])
    assert int(record["round"][0]) == 2 and int(record["step"][0]) == 3
    assert "too_few_keypoints 2" in failed_text(counts)


def test_improved_comes_from_the_put_result_not_a_read(store):
    fit_and_offer(fitter_with([10.0, 10.0], [0, 0]), store, jobs(2), 20.0)
    _, counts = fit_and_offer(fitter_with([5.0, 15.0], [0, 0]), store, jobs(2), 20.0)
    assert (counts.accepted, counts.improved) == (1, 1)
    assert store.get(["d/0", "d/1"])["loss"].tolist() == [5.0, 10.0]


def test_without_a_store_it_fits_and_counts_only():
    result, counts = fit_and_offer(fitter_with([1.0, 2.0], [0, 0]), None, jobs(2), 20.0)
    assert len(result) == 2 and counts.accepted == 0 and counts.valid == 2


def test_concat_and_split_keep_order_step_and_round():
    merged = concat_jobs([jobs(3, step=1), jobs(2, step=4)])
    assert len(merged) == 5 and merged.step == 4 and merged.keys[3] == "d/0"
    head, tail = merged.split(4)
    assert len(head) == 4 and tail is not None and len(tail) == 1 and tail.round == 2
    assert merged.split(5) == (merged, None)
    with pytest.raises(ValueError, match="cam_t"):
        concat_jobs([jobs(1), jobs(1, with_cam=False)])


counts_strategy = st.builds(
    FitCounts, offered=st.integers(0, 50), fitted=st.integers(0, 50),
    failed=st.dictionaries(st.sampled_from(FAILURE_REASONS[1:]), st.integers(0, 9), max_size=3),
    accepted=st.integers(0, 50), improved=st.integers(0, 50), valid=st.integers(0, 50),
    loss_sum=st.floats(0, 1e4), dropped=st.integers(0, 50), errors=st.integers(0, 9))


@given(a=counts_strategy, b=counts_strategy, c=counts_strategy)
def test_counts_add_up_field_by_field_and_associatively(a, b, c):
    total = a + b
    assert total.fitted == a.fitted + b.fitted and total.dropped == a.dropped + b.dropped
    assert total.failed_total == a.failed_total + b.failed_total
    for reason in set(a.failed) | set(b.failed):
        assert total.failed[reason] == a.failed.get(reason, 0) + b.failed.get(reason, 0)
    left, right = (a + b) + c, a + (b + c)
    assert left.as_dict().keys() == right.as_dict().keys()
    assert left.failed == right.failed and left.accepted == right.accepted
    assert math.isclose(left.loss_sum, right.loss_sum, rel_tol=1e-9, abs_tol=1e-9)
    assert a.as_dict()["failed_by_reason"] == dict(sorted(a.failed.items()))
