"""FitsStore writes, reads, metadata, map growth, processes and snapshots on a real LMDB."""

import json
import multiprocessing
import pickle
import time

import lmdb
import numpy as np
import pytest
from store_samples import keys_for, random_fits

from store import FitsStore, SchemaVersionError, StoreError
from store.environment import META_DB, META_VERSION
from store.migrate import migrate_store
from store.verify import verify_store


def _put(store, keys, loss, rng, **kwargs):
    fits = random_fits(rng, len(keys))
    return store.put_if_better(
        keys, fits["pose"], fits["betas"], fits["cam_t"], np.asarray(loss, float), **kwargs
    ).accepted


def test_writes_only_strictly_lower_losses(store, rng):
    assert _put(store, ["a/0", "a/1"], [5.0, 5.0], rng).tolist() == [True, True]
    first = store.get(["a/0"])["pose"].copy()
    # equal loss: refused (the stored fit stays), lower: accepted, higher: refused
    assert _put(store, ["a/0", "a/1"], [5.0, 4.0], rng).tolist() == [False, True]
    assert _put(store, ["a/1"], [4.5], rng).tolist() == [False]
    got = store.get(["a/0", "a/1"])
    assert got["loss"].tolist() == [5.0, 4.0]
    assert np.array_equal(got["pose"][0], first[0])


def test_duplicates_in_a_batch_keep_the_lowest_and_first_on_ties(store, rng):
    fits = random_fits(rng, 4)
    accepted = store.put_if_better(
        ["a/7"] * 4, fits["pose"], fits["betas"], fits["cam_t"], [3.0, 1.0, 2.0, 1.0]
    ).accepted
    assert accepted.tolist() == [False, True, False, False]
    assert np.array_equal(store.get(["a/7"])["pose"][0], fits["pose"][1])
    assert len(store) == 1


def test_nan_and_inf_candidates_are_refused_and_counted(store, rng):
    fits = random_fits(rng, 5)
    fits["pose"][1, 3] = np.nan
    fits["betas"][2, 0] = np.inf
    loss = np.array([1.0, 1.0, 1.0, np.nan, 1e40])
    cam_t = fits["cam_t"].astype(np.float64)
    cam_t[4] = 1e300  # finite in float64, +inf once stored as float32
    accepted = store.put_if_better(keys_for("a", range(5)), fits["pose"], fits["betas"], cam_t, loss).accepted
    assert accepted.tolist() == [True, False, False, False, False]
    assert store.get(keys_for("a", range(5)))["present"].tolist() == [True, False, False, False, False]
    counters = store.counters()
    assert counters["refused_nonfinite"] == 4 and counters["offered"] == 5 and counters["accepted"] == 1
    assert counters["by_round"]["0"]["refused_nonfinite"] == 4
    # a batch with nothing finite leaves no trace, not even its dataset name
    refused = store.put_if_better(["new/0"], fits["pose"][1:2], fits["betas"][:1], fits["cam_t"][:1], [1.0])
    assert not refused.accepted[0]
    assert "new" not in store.datasets()


def test_get_returns_fields_and_marks_absent_keys(store, rng):
    fits = random_fits(rng, 2)
    store.put_if_better(
        ["h36m/3", "lsp/1"],
        fits["pose"],
        fits["betas"],
        fits["cam_t"],
        [2.5, 7.0],
        round=4,
        step=[10, 11],
        source=["smplify", "gt"],
    )
    got = store.get(["lsp/1", "h36m/9", "nope/0", "h36m/3", "lsp/1"])
    assert got["present"].tolist() == [True, False, False, True, True]
    assert got["loss"].tolist() == [7.0, np.inf, np.inf, 2.5, 7.0]
    assert got["source"].tolist() == ["gt", "", "", "smplify", "gt"]
    assert got["round"].tolist() == [4, 0, 0, 4, 4]
    assert got["step"].tolist() == [11, 0, 0, 10, 11]
    assert np.array_equal(got["pose"][3], fits["pose"][0])
    assert np.array_equal(got["cam_t"][0], fits["cam_t"][1])
    assert not got["pose"][1].any()
    assert got["pose"].dtype == np.float32 and got["pose"].shape == (5, 72)


def test_bad_inputs_are_one_sentence_errors(store, rng):
    fits = random_fits(rng, 2)
    with pytest.raises(StoreError, match=r"`pose` has shape \(2, 71\)"):
        store.put_if_better(["a/0", "a/1"], fits["pose"][:, :71], fits["betas"], fits["cam_t"], [1.0, 1.0])
    with pytest.raises(StoreError, match="<dataset>/<index>"):
        store.put_if_better(["a/0", "a"], fits["pose"], fits["betas"], fits["cam_t"], [1.0, 1.0])
    with pytest.raises(StoreError, match="unknown fit source"):
        store.put_if_better(
            ["a/0", "a/1"], fits["pose"], fits["betas"], fits["cam_t"], [1.0, 1.0], source="x"
        )
    assert len(store) == 0


def test_metadata_datasets_counters_and_rounds(store, rng):
    _put(store, keys_for("h36m", [0, 5, 9]), [1, 2, 3], rng, round=0)
    _put(store, keys_for("h36m", [5, 20]), [1, 2], rng, round=1)
    _put(store, ["lsp/0"], [1], rng, round=1)
    datasets = store.datasets()
    assert datasets["h36m"] == {"id": 0, "size": 21, "count": 4, "dtype": "float32", "declared": False}
    assert datasets["lsp"]["id"] == 1 and datasets["lsp"]["count"] == 1
    store.declare_dataset("h36m", size=100)
    store.declare_dataset("mpii", size=10)
    assert store.datasets()["h36m"]["size"] == 100 and store.datasets()["mpii"]["count"] == 0
    counters = store.counters()
    assert counters["batches"] == 3 and counters["by_round"]["1"] == {
        "offered": 3,
        "accepted": 3,
        "refused_nonfinite": 0,
        "refused_invalid_loss": 0,
    }
    store.record_round(1, {"mpjpe": np.float32(88.5), "bad": float("nan"), "n": np.int64(3)})
    store.record_round(0, {"mpjpe": 90.0})
    rounds = store.rounds()
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["summary"] == {"mpjpe": 88.5, "bad": None, "n": 3}
    stats = store.stats()
    assert stats["records"] == 5 and stats["schema_version"] == 1 and stats["file_bytes"] > 0


def test_iter_dataset_streams_in_index_order(store, rng):
    indices = rng.permutation(1000)[:300]
    _put(store, keys_for("b", indices), np.arange(300), rng)
    _put(store, keys_for("a", range(5)), np.ones(5), rng)
    _put(store, keys_for("c", range(5)), np.ones(5), rng)
    chunks = list(store.iter_dataset("b", chunk_size=64))
    assert [len(c["index"]) for c in chunks] == [64] * 4 + [44]
    streamed = np.concatenate([c["index"] for c in chunks])
    assert np.array_equal(streamed, np.sort(indices))
    order = np.argsort(indices)
    assert np.array_equal(np.concatenate([c["loss"] for c in chunks]), np.arange(300)[order])
    assert np.concatenate([c["index"] for c in store.iter_dataset("b", start=int(streamed[100]))]).size == 200
    with pytest.raises(StoreError, match=r"no dataset 'x' \(it has: a, b, c\)"):
        next(store.iter_dataset("x"))


def test_map_grows_by_itself(tmp_path, rng):
    fits = FitsStore(tmp_path / "small", map_size=64 << 10)
    for start in range(0, 6000, 1500):  # about 2.5 MB of records into a 64 KiB map
        _put(fits, keys_for("a", range(start, start + 1500)), np.ones(1500), rng)
    assert len(fits) == 6000
    assert fits.get(["a/5999"])["present"][0]
    fits.close()
    assert verify_store(tmp_path / "small").ok


def test_readonly_store_refuses_writes_and_missing_store_is_named(tmp_path, store, rng):
    _put(store, ["a/0"], [1.0], rng)
    reader = FitsStore(store.path, readonly=True)  # shares this process's handle with the writer
    assert reader.get(["a/0"])["present"][0]
    with pytest.raises(StoreError, match="read-only"):
        _put(reader, ["a/1"], [1.0], rng)
    with pytest.raises(StoreError, match=f"no fits store at {tmp_path / 'missing'}"):
        FitsStore(tmp_path / "missing", readonly=True)


def test_a_reader_then_a_writer_in_one_process_share_the_environment(tmp_path, rng):
    with FitsStore(tmp_path / "fits") as first:
        _put(first, ["a/0"], [2.0], rng)
    reader = FitsStore(tmp_path / "fits", readonly=True)
    assert reader.get(["a/0"])["loss"].tolist() == [2.0]
    writer = FitsStore(tmp_path / "fits")  # upgrades the shared read-only handle
    _put(writer, ["a/0"], [1.0], rng)
    assert reader.get(["a/0"])["loss"].tolist() == [1.0]
    writer.close()
    assert reader.get(["a/0"])["loss"].tolist() == [1.0]  # still open for the reader
    reader.close()


def test_a_file_or_a_foreign_lmdb_is_not_taken_for_a_store(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a fits store directory"):
        FitsStore(tmp_path / "file")
    env = lmdb.open(str(tmp_path / "other"))
    with env.begin(write=True) as txn:
        txn.put(b"key", b"value")
    env.close()
    with pytest.raises(StoreError, match="holding other data, not a fits store"):
        FitsStore(tmp_path / "other")
    with pytest.raises(StoreError, match="not a fits store"):
        FitsStore(tmp_path / "other", readonly=True)


def _set_version(path, version):
    env = lmdb.open(str(path), max_dbs=4)
    meta = env.open_db(META_DB)
    with env.begin(write=True) as txn:
        txn.put(META_VERSION, str(version).encode(), db=meta)
    env.close()


def test_another_schema_version_names_the_migration_command(tmp_path, rng):
    path = tmp_path / "old"
    with FitsStore(path) as fits:
        _put(fits, ["a/0"], [1.0], rng)
    assert "already at schema version 1" in migrate_store(path)
    _set_version(path, 0)
    with pytest.raises(SchemaVersionError, match=f"spin fits migrate --store {path}"):
        FitsStore(path, readonly=True)
    with pytest.raises(StoreError, match="no migration from schema version 0"):
        migrate_store(path)
    _set_version(path, 7)
    with pytest.raises(SchemaVersionError, match="newer than this program"):
        FitsStore(path)


def _child_reads(store, queue):
    queue.put(store.get(["a/1"])["loss"].tolist())


def test_a_handle_never_crosses_a_fork(store, rng):
    _put(store, ["a/1"], [3.0], rng)
    reader = FitsStore(store.path, readonly=True)
    assert reader.get(["a/1"])["loss"].tolist() == [3.0]  # the parent has the environment open
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_reads, args=(reader, queue))
    child.start()
    assert queue.get(timeout=30) == [3.0]
    child.join(timeout=30)
    assert child.exitcode == 0
    _put(store, ["a/1"], [2.0], rng)
    assert reader.get(["a/1"])["loss"].tolist() == [2.0]  # the parent's handle still works


def test_store_pickles_as_its_path(store, rng):
    _put(store, ["a/1"], [3.0], rng)
    copy = pickle.loads(pickle.dumps(FitsStore(store.path, readonly=True)))
    assert copy.readonly and copy.get(["a/1"])["loss"].tolist() == [3.0]


def _keep_writing(path, batches):
    rng = np.random.default_rng(1)
    with FitsStore(path) as fits:
        for _ in range(batches):
            _put(fits, keys_for("a", rng.integers(0, 5000, 256)), rng.uniform(0, 100, 256), rng)


def test_snapshots_are_consistent_while_another_process_writes(tmp_path, rng):
    path = tmp_path / "live"
    with FitsStore(path) as fits:
        _put(fits, keys_for("a", range(100)), np.full(100, 200.0), rng)
    writer = multiprocessing.get_context("spawn").Process(target=_keep_writing, args=(path, 60))
    writer.start()
    snapshots = []
    reader = FitsStore(path, readonly=True)
    deadline = time.monotonic() + 60
    while reader.counters()["batches"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)  # start copying once the writer is under way
    for n in range(3):
        snapshots.append(reader.snapshot(tmp_path / f"snap{n}", repack=n == 2))
    copied_while_writing = reader.counters()["batches"] < 61
    writer.join(timeout=120)
    assert writer.exitcode == 0
    assert copied_while_writing
    for snap in snapshots:
        report = verify_store(snap, structure=True)
        assert report.ok, report.problems
        assert 100 <= report.records <= len(reader)
    with pytest.raises(StoreError, match="not an empty directory"):
        reader.snapshot(snapshots[0])


def test_repacked_snapshot_holds_the_same_records_in_fewer_pages(tmp_path, rng):
    with FitsStore(tmp_path / "random") as fits:
        for indices in np.array_split(rng.permutation(4000), 40):  # random order: half-full pages
            _put(fits, keys_for("a", indices), rng.uniform(0, 100, len(indices)), rng)
        fits.record_round(0, {"x": 1})
        plain = fits.snapshot(tmp_path / "plain")
        packed = fits.snapshot(tmp_path / "packed", repack=True)
    before, after = FitsStore(plain, readonly=True), FitsStore(packed, readonly=True)
    keys = keys_for("a", range(4000))
    a, b = before.get(keys), after.get(keys)
    for name in ("pose", "betas", "cam_t", "loss", "time", "source", "present"):
        assert np.array_equal(a[name], b[name]), name
    assert after.datasets() == before.datasets() and after.rounds() == before.rounds()
    assert (packed / "data.mdb").stat().st_size < 0.8 * (plain / "data.mdb").stat().st_size
    assert (packed / "data.mdb").stat().st_size / 4000 < 450


def test_corrupted_record_is_reported_by_get_and_healed_by_a_write(tmp_path, rng):
    path = tmp_path / "fits"
    with FitsStore(path) as fits:
        _put(fits, ["a/0", "a/1"], [5.0, 5.0], rng)
    env = lmdb.open(str(path), max_dbs=4)
    table = env.open_db(b"fits")
    with env.begin(write=True) as txn:
        txn.put(b"\x00\x00\x00\x00\x00\x01", b"garbage" * 10, db=table)
    env.close()
    with FitsStore(path) as fits:
        with pytest.raises(StoreError, match="a/1 .* is corrupted; run `spin fits verify"):
            fits.get(["a/1"])
        assert _put(fits, ["a/1"], [50.0], rng).tolist() == [True]  # a valid fit replaces garbage
        assert fits.counters()["corrupt_replaced"] == 1
        assert fits.get(["a/1"])["loss"].tolist() == [50.0]
    assert verify_store(path).ok


def test_metadata_is_json_in_a_named_table(store, rng):
    _put(store, ["a/0"], [1.0], rng)
    store.close()
    env = lmdb.open(str(store.path), max_dbs=4, readonly=True)
    meta = env.open_db(META_DB, create=False)
    with env.begin() as txn:
        assert json.loads(txn.get(b"datasets", db=meta))["a"]["count"] == 1
        assert txn.get(META_VERSION, db=meta) == b"1"
    env.close()


def test_put_result_reports_the_replaced_loss(store, rng):
    first = store.put_if_better(keys_for("a", range(3)), *random_fits(rng, 3).values(), [5.0, 6.0, 7.0])
    assert first.new.tolist() == [True, True, True] and not first.improved.any()
    assert np.isnan(first.previous_loss).all()
    second = store.put_if_better(keys_for("a", range(4)), *random_fits(rng, 4).values(), [4.0, 9.0, 1.0, 2.0])
    assert second.accepted.tolist() == [True, False, True, True]
    assert second.improved.tolist() == [True, False, True, False]
    assert second.new.tolist() == [False, False, False, True]
    assert second.previous_loss[[0, 2]].tolist() == [5.0, 7.0]
    assert np.isnan(second.previous_loss[[1, 3]]).all()
