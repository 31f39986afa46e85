"""The record and key layout: round trips, checksum, key order."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store import schema
from store.errors import StoreError


def _records(rng, count):
    return dict(
        pose=rng.standard_normal((count, 72)),
        betas=rng.standard_normal((count, 10)),
        cam_t=rng.standard_normal((count, 3)),
        loss=rng.uniform(0, 500, count),
        time=rng.uniform(1e9, 2e9, count),
        step=rng.integers(0, 2**40, count),
        round=rng.integers(0, 100, count),
        source=rng.integers(0, len(schema.SOURCES), count),
    )


def test_record_is_376_bytes_so_ten_fill_a_page():
    assert schema.RECORD_SIZE == 376
    # LMDB leaf node: 8-byte header + 6-byte key + value, 2-byte pointer; a page has 4080 usable bytes.
    assert 10 * (8 + schema.KEY_SIZE + schema.RECORD_SIZE + 2) <= 4096 - 16


def test_encode_decode_round_trip(rng):
    fields = _records(rng, 50)
    raw = schema.encode_records(**fields)
    decoded = schema.decode_records(raw, 50)
    assert np.array_equal(decoded["pose"], fields["pose"].astype(np.float32))
    assert np.array_equal(decoded["loss"], fields["loss"])
    assert np.array_equal(decoded["step"], fields["step"])
    assert np.array_equal(decoded["source"], fields["source"])
    assert schema.checksum_ok(decoded).all()
    assert not schema.record_problems(decoded).any()


def test_checksum_catches_every_single_byte_change(rng):
    raw = bytearray(schema.encode_records(**_records(rng, 1)))
    for position in range(schema.RECORD_SIZE):
        changed = bytearray(raw)
        changed[position] ^= 0x5A
        assert not schema.checksum_ok(schema.decode_records(bytes(changed), 1))[0], position


def test_all_zero_and_random_garbage_fail_the_checksum(rng):
    assert not schema.checksum_ok(schema.decode_records(bytes(schema.RECORD_SIZE), 1))[0]
    garbage = rng.integers(0, 256, schema.RECORD_SIZE * 100, dtype=np.uint8).tobytes()
    assert not schema.checksum_ok(schema.decode_records(garbage, 100)).any()


def test_nan_record_is_a_problem_even_with_a_valid_checksum(rng):
    fields = _records(rng, 3)
    fields["loss"][1] = np.nan
    fields["pose"][2, 5] = np.inf
    decoded = schema.decode_records(schema.encode_records(**fields), 3)
    assert schema.checksum_ok(decoded).all()
    assert schema.record_problems(decoded).tolist() == [False, True, True]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**16 - 1), st.integers(0, 2**32 - 1)), min_size=1, max_size=30))
def test_key_ints_sort_exactly_like_key_bytes(pairs):
    ids = np.array([p[0] for p in pairs])
    indices = np.array([p[1] for p in pairs])
    ints = schema.key_ints(ids, indices)
    keys = schema.encode_key_ints(ints)
    assert all(len(k) == schema.KEY_SIZE for k in keys)
    assert sorted(range(len(keys)), key=lambda i: (keys[i], i)) == sorted(
        range(len(keys)), key=lambda i: (ints[i], i)
    )
    assert np.array_equal(schema.decode_key_ints(b"".join(keys), len(keys)), ints)


def test_parse_key_takes_the_last_slash_and_rejects_bad_keys():
    assert schema.parse_key("coco/train/12") == ("coco/train", 12)
    for bad in (
        "h36m",
        "/3",
        "h36m/",
        "h36m/-1",
        "h36m/1.5",
        f"h36m/{2**32}",
        "h36m/²",
        "h36m/ 1",
        "h36m/1_0",
    ):
        with pytest.raises(StoreError, match="<dataset>/<index>"):
            schema.parse_key(bad)
        with pytest.raises(StoreError, match="<dataset>/<index>"):
            schema.parse_keys(["ok/1", bad])
    names, indices = schema.parse_keys(["a/b/3", "c/0"])
    assert names == ["a/b", "c"] and indices.tolist() == [3, 0]


def test_unknown_source_names_the_choices():
    with pytest.raises(StoreError, match="static, smplify, gt"):
        schema.source_codes("magic", 2)
