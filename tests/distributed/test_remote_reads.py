"""Fit reads for ranks: local LMDB reads on the store's node, batched reads through the writer actor
elsewhere, prefetched beside the step; no Ray needed for the local half."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import collated_batch, put_fits

from spin.distributed.remote_reads import RemoteFitReader, fit_reader_for, prefetch_fits, reads_in_collate
from spin.training.supervision import StoreFitReader
from store import FitsStore

KEYS = [f"synth/{i}" for i in range(8)]


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "fits.lmdb"
    with FitsStore(path) as store:
        store.declare_dataset("synth", 8)
        put_fits(store, KEYS[:4], loss=np.array([10.0, 20.0, 500.0, 30.0]))
    return path


def test_without_a_store_actor_the_directory_is_read_locally(store_path):
    reader = fit_reader_for(store_path)
    assert isinstance(reader, StoreFitReader) and reads_in_collate(reader)
    fits = reader.read(KEYS)
    assert fits["present"].tolist() == [True] * 4 + [False] * 4


def test_prefetch_adds_supervision_in_order_and_ahead_of_the_consumer(store_path):
    reader = StoreFitReader(store_path)
    batches = [collated_batch(KEYS[i:i + 4]) for i in (0, 4, 2)]
    produced = threading.Semaphore(0)

    def source():
        for batch in batches:
            yield batch
            produced.release()

    stream = prefetch_fits(source(), reader, threshold=100.0, depth=2)
    first = next(stream)
    assert produced.acquire(timeout=10)  # the second batch is read while the first is in use
    out = [first, *stream]
    assert [b["key"] for b in out] == [b["key"] for b in batches]
    assert out[0]["supervision"].from_fit.tolist() == [True, True, False, True]  # 500 ≥ threshold
    assert not out[1]["supervision"].present.any()
    assert out[2]["supervision"].from_fit.tolist() == [False, True, False, False]


def test_prefetch_hands_a_reader_failure_to_the_consumer(store_path):
    class Broken:
        def read(self, keys):
            raise RuntimeError("store actor gone")

    stream = prefetch_fits(iter([collated_batch(KEYS[:2])]), Broken(), threshold=100.0)
    with pytest.raises(RuntimeError, match="store actor gone"):
        next(stream)


@pytest.fixture
def local_ray():
    from fitting_workers.runtime import start_ray, stop_ray

    assert start_ray(num_cpus=1), "Ray was already running in this process"
    try:
        yield
    finally:
        stop_ray()
        from conftest import workers_conftest

        workers_conftest.assert_no_ray_processes()


def test_remote_reads_see_every_acknowledged_write(tmp_path, local_ray):
    from fitting_workers.store_actor import open_store_writer

    path = tmp_path / "fits.lmdb"
    writer = open_store_writer(path)
    try:
        writer.declare_dataset("synth", 8)
        assert isinstance(fit_reader_for(path, writer), StoreFitReader)  # same node: local reads
        reader = fit_reader_for(path, writer, node_id="another-node")
        assert isinstance(reader, RemoteFitReader) and not reads_in_collate(reader)
        for round_number, loss in enumerate((50.0, 40.0, 30.0), start=1):
            put_fits(writer, KEYS, loss=loss, seed=round_number, round=round_number)
            fits = reader.read(KEYS)  # read right after the acknowledged commit: nothing stale
            assert fits["present"].all() and np.allclose(fits["loss"], loss)
        assert (reader.reads, reader.timeouts) == (3, 0)
    finally:
        writer.kill()
