"""`verify_store` finds what is planted in a store with raw LMDB writes, and `repair` removes it."""

import json

import lmdb
import numpy as np
import pytest
from store_samples import keys_for, random_fits

from store import FitsStore, schema
from store.verify import verify_store


@pytest.fixture
def filled(tmp_path, rng):
    path = tmp_path / "fits"
    with FitsStore(path) as store:
        fits = random_fits(rng, 20)
        store.put_if_better(
            keys_for("lsp", range(20)), fits["pose"], fits["betas"], fits["cam_t"], np.arange(20.0)
        )
    return path


def _plant(path, key: bytes, value: bytes, table: bytes = b"fits"):
    env = lmdb.open(str(path), max_dbs=4)
    db = env.open_db(table)
    with env.begin(write=True) as txn:
        txn.put(key, value, db=db)
    env.close()


def _key(dataset_id: int, index: int) -> bytes:
    return dataset_id.to_bytes(2, "big") + index.to_bytes(4, "big")


def test_a_clean_store_passes_with_the_structure_walk(filled):
    report = verify_store(filled, structure=True)
    assert report.ok and report.records == 20 and report.datasets == 1 and report.structure_checked


def test_garbage_bytes_under_a_key_are_caught(filled, rng):
    _plant(filled, _key(0, 4), rng.integers(0, 256, schema.RECORD_SIZE, dtype=np.uint8).tobytes())
    report = verify_store(filled)
    assert not report.ok and report.bad_records == 1
    assert any("lsp/4" in p and "checksum" in p for p in report.problems)


def test_a_planted_nan_with_a_valid_checksum_is_caught(filled):
    record = schema.encode_records(
        np.zeros((1, 72)),
        np.zeros((1, 10)),
        np.zeros((1, 3)),
        np.array([np.nan]),
        np.zeros(1),
        np.zeros(1, np.int64),
        np.zeros(1),
        np.ones(1, np.uint8),
    )
    _plant(filled, _key(0, 7), record)
    report = verify_store(filled)
    assert not report.ok
    assert any("lsp/7" in p and "NaN" in p for p in report.problems)


def test_short_values_unknown_datasets_and_wrong_counts_are_caught(filled):
    _plant(filled, _key(0, 2), b"short")
    _plant(filled, _key(9, 0), bytes(schema.RECORD_SIZE))
    env = lmdb.open(str(filled), max_dbs=4)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        datasets = json.loads(txn.get(b"datasets", db=meta))
        datasets["lsp"]["count"] = 99
        txn.put(b"datasets", json.dumps(datasets).encode(), db=meta)
    env.close()
    problems = "\n".join(verify_store(filled).problems)
    assert "lsp/2: 5 bytes, a record has 376" in problems
    assert "does not belong to any dataset" in problems
    assert "dataset 'lsp' claims 99 records, holds 20" in problems


def test_repair_drops_bad_records_and_fixes_counts(filled):
    _plant(filled, _key(0, 4), b"x" * schema.RECORD_SIZE)
    _plant(filled, _key(0, 30), b"x" * schema.RECORD_SIZE)  # a new key: the count is now off as well
    report = verify_store(filled, repair=True)
    assert report.ok and report.repaired == 2 and report.records == 19
    with FitsStore(filled, readonly=True) as store:
        assert store.datasets()["lsp"]["count"] == 19
        assert store.get(["lsp/4", "lsp/5"])["present"].tolist() == [False, True]
