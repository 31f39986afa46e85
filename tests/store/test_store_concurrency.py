"""Best-so-far under concurrent writers: several processes offer random candidates to overlapping keys."""

import multiprocessing
import time
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import FitsStore
from store.verify import verify_store

KEYS = 12
PROCESSES = 3

loss_values = st.one_of(
    st.floats(min_value=0.0, max_value=1000.0, width=32),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 5.0]),  # 5.0: ties across processes
)
batch = st.lists(st.tuples(st.integers(0, KEYS - 1), loss_values), min_size=1, max_size=10)
process_batches = st.lists(batch, min_size=1, max_size=4)


def offer(path: str, batches: list[list[tuple[int, float]]], start_at: float) -> list[np.ndarray]:
    """Write each batch, reading every key's stored loss after each; returns the observed losses."""
    store = FitsStore(path)
    keys = [f"d/{i}" for i in range(KEYS)]
    time.sleep(max(0.0, start_at - time.time()))  # all processes start writing together
    seen = [store.get(keys)["loss"]]
    for candidates in batches:
        index = [i for i, _ in candidates]
        loss = np.array([value for _, value in candidates], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            # The pose encodes the loss, so the stored pose shows which candidate won.
            pose = np.repeat(loss.astype(np.float32)[:, None], 72, axis=1)
        store.put_if_better(
            [keys[i] for i in index], pose, np.zeros((len(index), 10)), np.zeros((len(index), 3)), loss
        )
        seen.append(store.get(keys)["loss"])
    store.close()
    return seen


@pytest.fixture(scope="module")
def pool():
    with multiprocessing.get_context("spawn").Pool(PROCESSES) as workers:
        workers.map(time.sleep, [0] * PROCESSES)  # pay the start-up once
        yield workers


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(work=st.lists(process_batches, min_size=PROCESSES, max_size=PROCESSES))
def test_concurrent_writers_keep_the_minimum_and_never_raise_a_loss(pool, tmp_path_factory, work):
    path = str(tmp_path_factory.mktemp("concurrent") / uuid.uuid4().hex)
    FitsStore(path).close()  # create it once, so the writers race on writes, not on creation
    start_at = time.time() + 0.2
    histories = pool.starmap(offer, [(path, batches, start_at) for batches in work])

    offered = [[] for _ in range(KEYS)]
    for batches in work:
        for candidates in batches:
            for index, value in candidates:
                offered[index].append(value)
    store = FitsStore(path, readonly=True)
    stored = store.get([f"d/{i}" for i in range(KEYS)])
    for index in range(KEYS):
        finite = [v for v in offered[index] if np.isfinite(v)]
        if finite:
            assert stored["present"][index]
            assert stored["loss"][index] == min(finite)
            assert (stored["pose"][index] == np.float32(min(finite))).all()
        else:
            assert not stored["present"][index]
    for seen in histories:  # each process's reads are in time order
        losses = np.stack(seen)  # +inf while a key is absent
        assert (losses[1:] <= losses[:-1]).all()
    counters = store.counters()
    total = sum(len(c) for batches in work for c in batches)
    refused = sum(not np.isfinite(v) for batches in work for c in batches for _, v in c)
    assert counters["offered"] == total and counters["refused_nonfinite"] == refused
    store.close()
    assert verify_store(path).ok
