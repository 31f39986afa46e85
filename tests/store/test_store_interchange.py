"""Round trips through every interchange format: SPIN static .npy, final-fits .npz, HDF5."""

import json

import h5py
import numpy as np
import pytest
from store_samples import keys_for, random_fits

from store import UNSCORED_LOSS, FitsStore, StoreError
from store.interchange import (
    export_h5,
    export_npz,
    export_spin_npy,
    import_h5,
    import_npz,
    import_spin_npy,
)


def _awkward_float32(rng, count):
    """Values whose bits are easy to lose: -0.0, subnormals, extremes, NaN-free."""
    rows = rng.standard_normal((count, 82)).astype(np.float32)
    rows[0, 0] = -0.0
    rows[1, 1] = np.float32(1e-45)  # smallest subnormal
    rows[2, 2] = np.finfo(np.float32).max
    rows[3, 3] = np.finfo(np.float32).tiny
    return rows


def test_float32_static_fits_round_trip_bit_exactly(tmp_path, store, rng):
    rows = _awkward_float32(rng, 300)
    np.save(tmp_path / "lsp_fits.npy", rows)
    summary = import_spin_npy(store, "lsp", tmp_path / "lsp_fits.npy")
    assert (summary.rows, summary.accepted, summary.exact_rows) == (300, 300, 0)
    export = export_spin_npy(store, "lsp", tmp_path / "out.npy")
    assert export.missing == 0
    assert (tmp_path / "out.npy").read_bytes() == (tmp_path / "lsp_fits.npy").read_bytes()
    got = store.get(keys_for("lsp", range(300)))
    assert (got["source"] == "static").all() and (got["loss"] == UNSCORED_LOSS).all()
    assert not got["cam_t"].any()


def test_float64_static_fits_round_trip_bit_exactly(tmp_path, store, rng):
    rows = rng.standard_normal((200, 82))
    rows[:50] = rows[:50].astype(np.float32)  # these rows float32 holds exactly
    rows[60, 0] = -0.0
    np.save(tmp_path / "h36m_fits.npy", rows)
    summary = import_spin_npy(store, "h36m", tmp_path / "h36m_fits.npy")
    assert summary.exact_rows == 150
    export_spin_npy(store, "h36m", tmp_path / "out.npy")
    assert (tmp_path / "out.npy").read_bytes() == (tmp_path / "h36m_fits.npy").read_bytes()

    # a better SMPLify fit replaces row 70: the export shows the new fit, every other row stays exact
    fits = random_fits(rng, 1)
    store.put_if_better(["h36m/70"], fits["pose"], fits["betas"], fits["cam_t"], [10.0])
    export_spin_npy(store, "h36m", tmp_path / "after.npy")
    after = np.load(tmp_path / "after.npy")
    assert after.dtype == np.float64
    assert np.array_equal(after[70], np.concatenate([fits["pose"][0], fits["betas"][0]]).astype(np.float64))
    others = np.delete(np.arange(200), 70)
    assert np.array_equal(after[others].view(np.uint64), rows[others].view(np.uint64))


def test_missing_rows_export_as_zeros_and_are_counted(tmp_path, store, rng):
    fits = random_fits(rng, 3)
    store.put_if_better(
        keys_for("coco", [0, 2, 5]), fits["pose"], fits["betas"], fits["cam_t"], [1.0, 2.0, 3.0]
    )
    export = export_spin_npy(store, "coco", tmp_path / "coco.npy")
    assert (export.rows, export.missing) == (6, 3)
    out = np.load(tmp_path / "coco.npy")
    assert out.shape == (6, 82) and out.dtype == np.float32
    assert not out[[1, 3, 4]].any()
    assert np.array_equal(out[5, :72], fits["pose"][2])


def test_loss_file_scores_imported_rows(tmp_path, store, rng):
    rows = rng.standard_normal((20, 82)).astype(np.float32)
    np.save(tmp_path / "fits.npy", rows)
    np.save(tmp_path / "loss.npy", np.arange(20, dtype=np.float64))
    import_spin_npy(store, "mpii", tmp_path / "fits.npy", loss=tmp_path / "loss.npy")
    assert store.get(["mpii/7"])["loss"][0] == 7.0
    fits = random_fits(rng, 2)
    accepted = store.put_if_better(
        ["mpii/7", "mpii/8"], fits["pose"], fits["betas"], fits["cam_t"], [8.0, 7.5]
    ).accepted
    assert accepted.tolist() == [False, True]


def test_unscored_rows_are_rescored_by_rewriting_them(tmp_path, store, rng):
    rows = rng.standard_normal((5, 82)).astype(np.float32)
    np.save(tmp_path / "fits.npy", rows)
    import_spin_npy(store, "lsp", tmp_path / "fits.npy")
    accepted = store.put_if_better(
        keys_for("lsp", range(5)),
        rows[:, :72],
        rows[:, 72:],
        np.zeros((5, 3)),
        np.full(5, 42.0),
        source="static",
    ).accepted
    assert accepted.all()
    assert (store.get(keys_for("lsp", range(5)))["loss"] == 42.0).all()


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 81), np.float32), r"has shape \(4, 81\); SPIN static fits are \(N, 82\)"),
        (np.zeros((4, 82), np.int32), "holds int32; convert it to float32 or float64"),
        (np.array([[0.0] * 82, [np.nan] * 82]), "NaN, Inf or a value beyond float32 range in row 1"),
        (np.full((2, 82), 1e300), "beyond float32 range in row 0"),
    ],
)
def test_bad_static_fits_files_are_named(tmp_path, store, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(StoreError, match=message) as error:
        import_spin_npy(store, "x", tmp_path / "bad.npy")
    assert str(tmp_path / "bad.npy") in str(error.value)
    assert len(store) == 0


def _wrong_loss_length(tmp_path, store):
    np.save(tmp_path / "fits.npy", np.zeros((3, 82), np.float32))
    np.save(tmp_path / "loss.npy", np.zeros(4))
    import_spin_npy(store, "x", tmp_path / "fits.npy", loss=tmp_path / "loss.npy")


def _missing_file(tmp_path, store):
    import_spin_npy(store, "x", tmp_path / "nothere.npy")


def _export_into_missing_folder(tmp_path, store):
    np.save(tmp_path / "ok.npy", np.zeros((1, 82), np.float32))
    import_spin_npy(store, "x", tmp_path / "ok.npy")  # must succeed: only the export may raise
    export_spin_npy(store, "x", tmp_path / "no" / "dir.npy")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (_wrong_loss_length, r"loss.npy has shape \(4,\); it needs one loss per row, \(3,\)"),
        (_missing_file, "nothere.npy does not exist"),
        (_export_into_missing_folder, "folder of"),
    ],
    ids=["wrong-loss-length", "missing-file", "export-into-missing-folder"],
)
def test_bad_loss_file_missing_file_and_missing_folder_are_named(tmp_path, store, call, message):
    with pytest.raises(StoreError, match=message):
        call(tmp_path, store)


def test_final_fits_npz_round_trip(tmp_path, store, rng):
    fits = random_fits(rng, 4)
    store.put_if_better(
        keys_for("lsp", [0, 1, 3, 4]), fits["pose"], fits["betas"], fits["cam_t"], [50.0, 150.0, 99.0, 100.0]
    )
    export = export_npz(store, "lsp", tmp_path / "lsp.npz", threshold=100.0)
    assert (export.rows, export.missing) == (5, 1)
    with np.load(tmp_path / "lsp.npz") as archive:
        assert archive["valid"].tolist() == [True, False, False, True, False]
        assert archive["pose"].shape == (5, 72) and archive["betas"].shape == (5, 10)
        assert np.array_equal(archive["pose"][[0, 1, 3, 4]], fits["pose"])
        assert np.isinf(archive["loss"][2])
    copy = FitsStore(tmp_path / "copy")
    summary = import_npz(copy, "lsp", tmp_path / "lsp.npz")
    assert (summary.accepted, summary.skipped) == (4, 1)
    a, b = store.get(keys_for("lsp", range(5))), copy.get(keys_for("lsp", range(5)))
    for name in ("pose", "betas", "cam_t", "loss", "present"):
        assert np.array_equal(a[name], b[name]), name
    assert (b["source"][b["present"]] == "static").all()
    copy.close()


def test_spin_style_npz_without_loss_imports_unscored(tmp_path, store, rng):
    np.savez(tmp_path / "final.npz", pose=np.zeros((3, 72)), betas=np.ones((3, 10)), valid=np.ones(3, bool))
    assert import_npz(store, "coco", tmp_path / "final.npz").accepted == 3
    assert (store.get(keys_for("coco", range(3)))["loss"] == UNSCORED_LOSS).all()
    np.savez(tmp_path / "broken.npz", pose=np.zeros((3, 72)))
    with pytest.raises(StoreError, match="has no `betas` array"):
        import_npz(store, "coco", tmp_path / "broken.npz")


def test_h5_round_trip_keeps_every_field_and_the_metadata(tmp_path, store, rng):
    fits = random_fits(rng, 30)
    store.put_if_better(
        keys_for("h36m", range(30)),
        fits["pose"],
        fits["betas"],
        fits["cam_t"],
        rng.uniform(0, 300, 30),
        round=2,
        step=np.arange(30),
        source=["smplify"] * 29 + ["gt"],
    )
    store.put_if_better(keys_for("a/b", [3]), fits["pose"][:1], fits["betas"][:1], fits["cam_t"][:1], [1.0])
    rows64 = rng.standard_normal((10, 82))
    np.save(tmp_path / "f64.npy", rows64)
    import_spin_npy(store, "lsp", tmp_path / "f64.npy")
    store.record_round(2, {"mpjpe": 80.0})
    summaries = export_h5(store, tmp_path / "fits.h5")
    assert [s.dataset for s in summaries] == ["h36m", "a/b", "lsp"]

    with h5py.File(tmp_path / "fits.h5", "r") as handle:
        assert handle.attrs["schema_version"] == 1
        assert json.loads(handle.attrs["rounds"])[0]["summary"] == {"mpjpe": 80.0}
        group = handle["datasets"]["h36m"]
        assert group.attrs["count"] == 30 and group.attrs["size"] == 30
        assert group["pose"].shape == (30, 72) and group["loss"].dtype == np.float64
        assert handle["datasets"]["a%2Fb"].attrs["name"] == "a/b"

    copy = FitsStore(tmp_path / "copy")
    restored = import_h5(copy, tmp_path / "fits.h5")
    assert [s.accepted for s in restored] == [30, 1, 10]
    for name, indices in (("h36m", range(30)), ("a/b", [3]), ("lsp", range(10))):
        a, b = store.get(keys_for(name, indices)), copy.get(keys_for(name, indices))
        for field in a:
            assert np.array_equal(a[field], b[field]), (name, field)
    assert copy.datasets() == store.datasets()
    assert copy.rounds() == store.rounds()
    export_spin_npy(copy, "lsp", tmp_path / "again.npy")
    assert (tmp_path / "again.npy").read_bytes() == (tmp_path / "f64.npy").read_bytes()
    with pytest.raises(StoreError, match="has no dataset 'nope'"):
        import_h5(copy, tmp_path / "fits.h5", datasets=["nope"])
    copy.close()
