"""StoreWriterActor and RemoteFitsStore on a local Ray: same API as FitsStore, one writer per store."""

import threading

import lmdb
import numpy as np
import pytest
from store_samples import keys_for, random_fits

ray = pytest.importorskip("ray")

from fitting_workers.store_actor import RemoteFitsStore, StoreWriter, open_store_writer  # noqa: E402
from store import FitsStore, StoreError, pages  # noqa: E402
from store.verify import verify_store  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    # address="local": never join a cluster another test or user left running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@ray.remote
def _offer_from_a_task(store: RemoteFitsStore, key: str, loss: float) -> bool:
    put = store.put_if_better([key], np.zeros((1, 72)), np.zeros((1, 10)), np.zeros((1, 3)), [loss])
    return bool(put.accepted[0])


def test_remote_store_has_the_local_api(local_ray, tmp_path, rng):
    writer = open_store_writer(tmp_path / "fits")
    fits = random_fits(rng, 3)
    accepted = writer.put_if_better(
        keys_for("h36m", range(3)),
        fits["pose"],
        fits["betas"],
        fits["cam_t"],
        [3.0, 2.0, np.nan],
        round=1,
        step=5,
    ).accepted
    assert accepted.tolist() == [True, True, False]
    got = writer.get(["h36m/0", "h36m/2"])
    assert got["present"].tolist() == [True, False]
    assert np.array_equal(got["pose"][0], fits["pose"][0]) and got["round"][0] == 1
    assert len(writer) == 2
    stats = writer.stats()
    assert stats["records"] == 2 and stats["counters"]["refused_nonfinite"] == 1
    writer.record_round(1, {"mpjpe": 70.0})
    assert writer.rounds()[0]["summary"] == {"mpjpe": 70.0}
    assert [len(c["index"]) for c in writer.iter_dataset("h36m", chunk_size=1)] == [1, 1]
    with pytest.raises(StoreError, match="<dataset>/<index>"):
        writer.put_if_better(["bad"], fits["pose"][:1], fits["betas"][:1], fits["cam_t"][:1], [1.0])
    writer.snapshot(tmp_path / "snap")
    assert verify_store(tmp_path / "snap").ok
    # processes on the store's node read the directory directly
    with FitsStore(tmp_path / "fits", readonly=True) as local:
        assert local.get(["h36m/1"])["loss"].tolist() == [2.0]


def test_one_writer_per_store_and_batches_from_anywhere(local_ray, tmp_path):
    writer = open_store_writer(tmp_path / "fits")
    again = open_store_writer(str(tmp_path / "fits"))
    assert again.handle == writer.handle  # found by name, not a second writer
    other = open_store_writer(tmp_path / "other")
    assert other.handle != writer.handle
    # many small batches at once: merged into fewer transactions, same outcome as one by one
    refs = [
        writer.put_if_better_async(
            keys_for("d", range(16)),
            np.zeros((16, 72)),
            np.zeros((16, 10)),
            np.zeros((16, 3)),
            np.full(16, 100.0 - k),
        )
        for k in range(30)
    ]
    masks = [result.accepted for result in ray.get(refs)]
    assert all(mask.shape == (16,) for mask in masks)
    assert masks[-1].all()  # the lowest loss was offered last: it must be stored
    assert (writer.get(keys_for("d", range(16)))["loss"] == 71.0).all()
    assert writer.counters()["batches"] <= 30 and writer.counters()["offered"] == 480
    assert ray.get(_offer_from_a_task.remote(writer, "d/0", 1.0))
    assert writer.get(["d/0"])["loss"].tolist() == [1.0]


def test_a_store_the_writer_cannot_open_is_a_one_sentence_error(local_ray, tmp_path):
    path = tmp_path / "old"
    FitsStore(path).close()
    env = lmdb.open(str(path), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"schema_version", b"0", db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(StoreError, match="spin fits migrate"):
        open_store_writer(path)


@pytest.mark.parametrize("fault", ["empty-data-file", "zeroed-page", "other-files"])
def test_a_damaged_or_foreign_store_is_the_writers_one_sentence_within_the_timeout(
    local_ray, tmp_path, fault
):
    path = tmp_path / "fits"
    if fault == "empty-data-file":
        path.mkdir()
        (path / "data.mdb").touch()
    elif fault == "other-files":
        path.mkdir()
        (path / "notes.txt").write_text("not fits")
    else:
        with FitsStore(path) as fits:
            fits.put_if_better(
                keys_for("d", range(400)),
                np.zeros((400, 72)),
                np.zeros((400, 10)),
                np.zeros((400, 3)),
                np.ones(400),
            )
        leaves = pages.walk(path).leaves[b"fits"]
        with open(path / "data.mdb", "r+b") as handle:  # zero a leaf page of fit records
            handle.seek(leaves[len(leaves) // 2] * 4096)
            handle.write(bytes(4096))
    with pytest.raises(StoreError, match="damaged|holds other files") as error:
        open_store_writer(path, timeout=60)
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_the_writers_answer_is_awaited_for_a_bounded_time(local_ray, tmp_path):
    @ray.remote
    class Silent:
        def ready(self):
            import time

            time.sleep(30)

    handle = Silent.remote()
    with pytest.raises(StoreError, match="did not answer within 0.5 s"):
        RemoteFitsStore(handle, "somewhere", timeout=0.5)._call(handle.ready.remote())
    ray.kill(handle)


def test_group_commit_from_many_threads_keeps_best_so_far(tmp_path, rng):
    """The actor's class without Ray: concurrent callers, merged transactions, same final state."""
    writer = StoreWriter(str(tmp_path / "fits"))
    offers = [rng.uniform(0, 100, 20) for _ in range(24)]
    results: dict[int, np.ndarray] = {}

    def offer(n: int) -> None:
        results[n] = writer.put_if_better(
            keys_for("d", range(20)),
            np.zeros((20, 72)),
            np.zeros((20, 10)),
            np.zeros((20, 3)),
            offers[n],
            step=n,
        )

    threads = [threading.Thread(target=offer, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = writer.get(keys_for("d", range(20)))
    assert np.array_equal(stored["loss"], np.min(offers, axis=0))
    for key in range(20):  # the stored candidate is one that was reported accepted
        winner = int(stored["step"][key])
        assert results[winner].accepted[key] and offers[winner][key] == stored["loss"][key]
    assert writer.counters()["offered"] == 24 * 20
    with pytest.raises(StoreError, match=r"`pose` has shape \(1, 3\)"):
        writer.put_if_better(["d/0"], np.zeros((1, 3)), np.zeros((1, 10)), np.zeros((1, 3)), [1.0])
