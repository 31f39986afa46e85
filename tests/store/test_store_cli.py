"""`spin fits …` commands, run through typer's CliRunner on `fits_app` against real stores."""

import json

import lmdb
import numpy as np
import pytest
from store_samples import keys_for, random_fits
from typer.testing import CliRunner

from spin.cli.fits import fits_app
from spin.errors import UserError
from store import FitsStore, StoreError, schema

runner = CliRunner()


def run(*args: str):
    return runner.invoke(fits_app, [str(a) for a in args])


@pytest.fixture
def imported(tmp_path, rng):
    """A store with dataset 'lsp' imported from a float32 static-fits file, 2 rows rescored."""
    rows = rng.standard_normal((10, 82)).astype(np.float32)
    np.save(tmp_path / "lsp_fits.npy", rows)
    store = tmp_path / "fits"
    result = run("import", tmp_path / "lsp_fits.npy", "--store", store, "--dataset", "lsp")
    assert result.exit_code == 0, result.output
    assert "lsp: 10 rows read, 10 written" in result.output and "unscored" in result.output
    with FitsStore(store) as fits:
        fits.put_if_better(["lsp/0", "lsp/1"], rows[:2, :72], rows[:2, 72:], np.zeros((2, 3)), [40.0, 250.0])
    return store


def test_stats_json_has_count_mean_and_valid_fraction(imported):
    result = run("stats", "--store", imported, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["lsp"]["count"] == 10
    assert stats["lsp"]["mean_loss"] == pytest.approx(145.0)
    assert stats["lsp"]["frac_valid"] == pytest.approx(0.1)
    assert stats["lsp"]["by_source"]["smplify"]["count"] == 2
    table = run("stats", "--store", imported)
    assert table.exit_code == 0 and "lsp" in table.output and "10.0%" in table.output


def test_show_prints_one_record_and_names_a_missing_key(imported):
    result = run("show", "lsp/0", "--store", imported, "--json")
    assert result.exit_code == 0
    record = json.loads(result.output)
    assert record["loss"] == 40.0 and record["source"] == "smplify" and len(record["pose"]) == 72
    assert "smplify" in run("show", "lsp/0", "--store", imported).output
    missing = run("show", "lsp/77", "--store", imported)
    assert missing.exit_code == 1 and isinstance(missing.exception, UserError)
    assert "no fit for 'lsp/77'" in str(missing.exception)


def test_export_every_format(tmp_path, imported):
    with FitsStore(imported) as fits:
        assert fits.resize_dataset("lsp", 13) == 10  # the 10 imported rows, then 3 more samples
        fits.put_if_better(["lsp/12"], np.ones((1, 72)), np.ones((1, 10)), np.ones((1, 3)), [5.0])
    npy = run(
        "export", "--store", imported, "--dataset", "lsp", "--format", "spin-npy", "--out", tmp_path / "o.npy"
    )
    assert npy.exit_code == 0, npy.output
    assert "13 rows" in npy.output and "2 samples have no fit (filled with zeros)" in npy.output
    exported = np.load(tmp_path / "o.npy")
    original = np.load(tmp_path / "lsp_fits.npy")
    assert np.array_equal(exported[:10].view(np.uint32), original.view(np.uint32))
    assert not exported[10:12].any()
    npz = run(
        "export", "--store", imported, "--dataset", "lsp", "--format", "npz", "--out", tmp_path / "o.npz"
    )
    assert npz.exit_code == 0
    with np.load(tmp_path / "o.npz") as archive:
        assert archive["valid"].sum() == 2  # lsp/0 (40) and lsp/12 (5)
    h5 = run("export", "--store", imported, "--format", "h5", "--out", tmp_path / "o.h5")
    assert h5.exit_code == 0 and (tmp_path / "o.h5").stat().st_size > 0
    again = run("import", tmp_path / "o.h5", "--store", tmp_path / "copy")
    assert again.exit_code == 0 and "lsp: 11 rows read, 11 written" in again.output


def test_plot_writes_a_png(tmp_path, imported):
    result = run("plot", "--store", imported, "--out", tmp_path / "fits.png")
    assert result.exit_code == 0, result.output
    data = (tmp_path / "fits.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_diff_counts_improved_keys(tmp_path, imported):
    assert run("snapshot", "--store", imported, "--out", tmp_path / "before").exit_code == 0
    with FitsStore(imported) as fits:
        fits.put_if_better(
            keys_for("lsp", [0, 5]), np.zeros((2, 72)), np.zeros((2, 10)), np.zeros((2, 3)), [30.0, 60.0]
        )
        fits.resize_dataset("lsp", 21)
        fits.put_if_better(["lsp/20"], np.zeros((1, 72)), np.zeros((1, 10)), np.zeros((1, 3)), [1.0])
    result = run("diff", tmp_path / "before", imported, "--json")
    assert result.exit_code == 0, result.output
    lsp = json.loads(result.output)["lsp"]
    # lsp/0 went 40 → 30 (a gain); lsp/5 was unscored and got its first real loss: scored, no gain
    assert (lsp["common"], lsp["new"], lsp["improved"], lsp["scored"], lsp["worse"]) == (10, 1, 1, 1, 0)
    assert lsp["max_improvement"] == pytest.approx(10.0)
    assert (lsp["valid_before"], lsp["valid_after"]) == (1, 3)
    assert "lsp" in run("diff", tmp_path / "before", imported).output


def test_verify_exit_status_follows_the_store(imported):
    ok = run("verify", "--store", imported, "--structure")
    assert ok.exit_code == 0 and "ok" in ok.output
    env = lmdb.open(str(imported), max_dbs=4)
    with env.begin(write=True) as txn:
        txn.put(b"\x00\x00\x00\x00\x00\x03", b"\x00" * schema.RECORD_SIZE, db=env.open_db(b"fits", txn=txn))
    env.close()
    bad = run("verify", "--store", imported)
    assert bad.exit_code == 1 and "lsp/3" in bad.output and "--repair" in bad.output
    assert run("verify", "--store", imported, "--repair").exit_code == 0
    assert run("verify", "--store", imported).exit_code == 0


def test_snapshot_and_migrate(tmp_path, imported):
    result = run("snapshot", "--store", imported, "--out", tmp_path / "snap", "--repack")
    assert result.exit_code == 0 and "bytes per fit" in result.output
    assert len(FitsStore(tmp_path / "snap", readonly=True)) == 10
    migrate = run("migrate", "--store", imported)
    assert migrate.exit_code == 0 and "already at schema version 1" in migrate.output


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("stats", "--store", "{tmp}/missing"), StoreError, "no fits store at"),
        (
            ("export", "--store", "{store}", "--dataset", "h36m", "--format", "npz", "--out", "{tmp}/x.npz"),
            StoreError,
            "has no dataset 'h36m' (it has: lsp)",
        ),
        (("export", "--store", "{store}", "--format", "npz", "--out", "{tmp}/x.npz"), UserError, "--dataset"),
        (("import", "{tmp}/wrong.npy", "--store", "{store}", "--dataset", "lsp"), StoreError, "(3, 5)"),
        (("import", "{tmp}/lsp_fits.npy", "--store", "{store}"), UserError, "needs --dataset"),
        (("import", "{tmp}/fits.txt", "--store", "{store}"), UserError, "is not .npy"),
    ],
)
def test_user_mistakes_are_one_sentence_errors(tmp_path, imported, args, error, message):
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    (tmp_path / "fits.txt").write_text("x")
    result = run(*(a.format(tmp=tmp_path, store=imported) for a in args))
    assert result.exit_code == 1
    assert isinstance(result.exception, error), result.exception
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_import_npz_with_a_loss_file_is_refused(tmp_path, imported, rng):
    fits = random_fits(rng, 1)
    np.savez(tmp_path / "f.npz", pose=fits["pose"], betas=fits["betas"])
    result = run(
        "import", tmp_path / "f.npz", "--store", imported, "--dataset", "x", "--loss", tmp_path / "l.npy"
    )
    assert result.exit_code == 1 and "--loss applies to .npy" in str(result.exception)
