"""Fault injection for the fits store: every fault ends in one clear error, and no acknowledged fit
is lost, faked or silently replaced.

Each test first stores fits (the "acknowledged" ones), injects one fault (a damaged file, a bad
input, a full disk, a kill), checks the error, and then checks that every acknowledged fit is
still there bit for bit. Commands that could crash a process on a damaged file run in a
subprocess, so a regression shows as a failed assertion (signal in the exit status), never as a
dead test runner.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest

from store import FitsStore, StoreError, pages, schema
from store.errors import DamagedStoreError
from store.verify import verify_store

ROOT = Path(__file__).resolve().parents[2]
COUNT = 400
FIELDS = ("pose", "betas", "cam_t", "loss", "round", "step", "time", "source")


# -- helpers ------------------------------------------------------------------------------------


def _fill(path: Path, count: int = COUNT, dataset: str = "h36m", seed: int = 0) -> dict[str, np.ndarray]:
    """Store `count` scored fits in a declared dataset; returns them as the store reads them back."""
    rng = np.random.default_rng(seed)
    keys = [f"{dataset}/{i}" for i in range(count)]
    with FitsStore(path, sync=False) as store:
        store.declare_dataset(dataset, size=count)
        put = store.put_if_better(
            keys,
            rng.standard_normal((count, 72)),
            rng.standard_normal((count, 10)),
            rng.standard_normal((count, 3)),
            rng.uniform(1, 90, count),
            round=1,
            step=np.arange(count),
        )
        assert put.accepted.all()
        acknowledged = store.get(keys)
    acknowledged["keys"] = np.array(keys)
    return acknowledged


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    if a.dtype.kind in "fiu":
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    return bool(np.array_equal(a, b))


def _assert_intact(path: Path, acknowledged: dict[str, np.ndarray], only: np.ndarray | None = None) -> None:
    """Every acknowledged fit (or those at positions `only`) reads back bit-exactly from `path`."""
    keys = acknowledged["keys"] if only is None else acknowledged["keys"][only]
    with FitsStore(path, readonly=True) as store:
        got = store.get(list(keys))
    assert got["present"].all(), f"{(~got['present']).sum()} acknowledged fits are missing"
    for name in FIELDS:
        expected = acknowledged[name] if only is None else acknowledged[name][only]
        assert _same_bits(got[name], expected), name


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "data.mdb").read_bytes()).hexdigest()


def _spin(*args: object, limit_bytes: int | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `spin ARGS` in a subprocess (optionally with a file-size limit); never raises for its failure."""
    prelude = ""
    if limit_bytes is not None:
        # SIGXFSZ ignored: a write past the limit fails with EFBIG, as on a full disk, instead of killing.
        prelude = (
            "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit_bytes}, {limit_bytes})); "
        )
    code = prelude + "import sys; from spin.cli.main import main; sys.argv = ['spin', *sys.argv[1:]]; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def _one_clear_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with exit status 1 (not a signal) and said `words`, without a traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, (result.returncode, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    for word in words:
        assert word in output, (word, output[-2000:])
    return output


def _leaf_page_of_fits(path: Path) -> int:
    """A page number of the committed `fits` table holding fit records (a leaf)."""
    leaves = pages.walk(path).leaves[b"fits"]
    return leaves[len(leaves) // 2]


def _damage(path: Path, how: str) -> None:
    data = path / "data.mdb"
    if how == "truncated":
        os.truncate(data, data.stat().st_size // 2)
        return
    meta = pages.read_meta(path)
    pgno = _leaf_page_of_fits(path)
    with open(data, "r+b") as handle:
        handle.seek(pgno * meta.page_size)
        fill = b"\0" * meta.page_size if how == "zeroed" else np.random.default_rng(1).bytes(meta.page_size)
        handle.write(fill)


# -- losses ------------------------------------------------------------------------------------


def test_negative_and_nan_losses_are_refused_and_counted(tmp_path):
    acknowledged = _fill(tmp_path / "fits")
    with FitsStore(tmp_path / "fits") as store:
        put = store.put_if_better(
            ["h36m/0", "h36m/1", "h36m/2"],
            np.zeros((3, 72)),
            np.zeros((3, 10)),
            np.zeros((3, 3)),
            [-1.0, np.nan, -0.0],
        )
        counters = store.counters()
    # -0.0 is a loss of zero: finite and not below 0, so it is a (perfect) fit and replaces key 2
    assert put.accepted.tolist() == [False, False, True]
    assert counters["refused_invalid_loss"] == 1 and counters["refused_nonfinite"] == 1
    assert counters["by_round"]["0"]["refused_invalid_loss"] == 1
    _assert_intact(tmp_path / "fits", acknowledged, only=np.array([0, 1, *range(3, COUNT)]))


@pytest.mark.parametrize("bad", [-3.0, np.nan, np.inf])
def test_fits_import_with_a_bad_loss_file_is_an_error_before_anything_is_written(tmp_path, bad):
    rows = np.random.default_rng(0).standard_normal((20, 82)).astype(np.float32)
    losses = np.linspace(1, 20, 20)
    losses[7] = bad
    np.save(tmp_path / "fits.npy", rows)
    np.save(tmp_path / "loss.npy", losses)
    new = tmp_path / "new_store"
    result = _spin(
        "fits",
        "import",
        tmp_path / "fits.npy",
        "--store",
        new,
        "--dataset",
        "lsp",
        "--loss",
        tmp_path / "loss.npy",
    )
    _one_clear_line(result, "loss.npy", "row 7", "finite and >= 0")
    assert not new.exists()  # the input is checked before the store is created
    acknowledged = _fill(tmp_path / "fits")
    before = _digest(tmp_path / "fits")
    result = _spin(
        "fits",
        "import",
        tmp_path / "fits.npy",
        "--store",
        tmp_path / "fits",
        "--dataset",
        "lsp",
        "--loss",
        tmp_path / "loss.npy",
    )
    _one_clear_line(result, "row 7")
    assert _digest(tmp_path / "fits") == before
    _assert_intact(tmp_path / "fits", acknowledged)


def test_a_damaged_h5_export_with_bad_losses_is_refused(tmp_path):
    acknowledged = _fill(tmp_path / "fits")
    assert (
        _spin(
            "fits", "export", "--store", tmp_path / "fits", "--format", "h5", "--out", tmp_path / "fits.h5"
        ).returncode
        == 0
    )
    with h5py.File(tmp_path / "fits.h5", "r+") as handle:
        handle["datasets/h36m/loss"][5] = -2.5
    target = tmp_path / "target"
    _fill(target, count=COUNT, seed=3)
    before = _digest(target)
    _one_clear_line(_spin("fits", "import", tmp_path / "fits.h5", "--store", target), "fits.h5", "row 5")
    assert _digest(target) == before  # nothing written, not even the rows before row 5
    _one_clear_line(_spin("fits", "import", tmp_path / "fits.h5", "--store", tmp_path / "fresh"), "row 5")
    assert not (tmp_path / "fresh").exists()
    _assert_intact(tmp_path / "fits", acknowledged)


def test_verify_flags_a_stored_negative_loss(tmp_path):
    acknowledged = _fill(tmp_path / "fits")
    record = schema.encode_records(
        np.zeros((1, 72)),
        np.zeros((1, 10)),
        np.zeros((1, 3)),
        np.array([-4.0]),
        np.array([0.0]),
        np.array([0]),
        np.array([0]),
        np.array([1]),
    )
    env = lmdb.open(str(tmp_path / "fits"), max_dbs=4)  # an old or foreign writer that did not check
    with env.begin(write=True) as txn:
        txn.put(b"\x00\x00\x00\x00\x00\x03", record, db=env.open_db(b"fits", txn=txn))
    env.close()
    report = verify_store(tmp_path / "fits")
    assert not report.ok and any("h36m/3" in p and "negative loss" in p for p in report.problems)
    assert verify_store(tmp_path / "fits", repair=True).ok
    _assert_intact(tmp_path / "fits", acknowledged, only=np.array([i for i in range(COUNT) if i != 3]))


# -- dataset sizes ------------------------------------------------------------------------------


def test_declaring_another_size_names_both_sizes_and_the_fix(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path, count=8)
    with FitsStore(path) as store:
        with pytest.raises(StoreError) as error:
            store.declare_dataset("h36m", size=20)
        store.declare_dataset("h36m", size=8)  # the same size is fine
        assert store.datasets()["h36m"]["size"] == 8
    message = str(error.value)
    assert "8 samples, not 20" in message and "another name" in message
    assert f"spin fits resize --store {path} --dataset h36m --size 20" in message
    _assert_intact(path, acknowledged)


def test_an_import_of_20_rows_into_an_8_row_dataset_is_an_error(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path, count=8)
    np.save(tmp_path / "big.npy", np.zeros((20, 82), np.float32))
    before = _digest(path)
    _one_clear_line(
        _spin("fits", "import", tmp_path / "big.npy", "--store", path, "--dataset", "h36m"),
        "8 samples, not 20",
        "spin fits resize",
    )
    assert _digest(path) == before
    with FitsStore(path, readonly=True) as store:
        assert store.datasets()["h36m"]["size"] == 8
    _assert_intact(path, acknowledged)


def test_a_key_past_the_declared_size_is_refused_with_the_key_and_size(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path, count=8)
    with FitsStore(path) as store:
        with pytest.raises(StoreError, match=r"h36m/8 lies past the declared size 8"):
            store.put_if_better(
                ["h36m/0", "h36m/8"], np.zeros((2, 72)), np.zeros((2, 10)), np.zeros((2, 3)), [0.5, 0.5]
            )
        assert len(store) == 8  # nothing of the batch, not even the valid h36m/0
    _assert_intact(path, acknowledged)


def test_resize_refuses_to_shrink_below_a_stored_index_and_grows_on_purpose(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path, count=8)
    _one_clear_line(
        _spin("fits", "resize", "--store", path, "--dataset", "h36m", "--size", "5"), "index 7", "--size 8"
    )
    grown = _spin("fits", "resize", "--store", path, "--dataset", "h36m", "--size", "20")
    assert grown.returncode == 0, grown.stderr
    with FitsStore(path) as store:
        assert store.datasets()["h36m"]["size"] == 20
        store.declare_dataset("h36m", size=20)
        assert store.put_if_better(
            ["h36m/19"], np.zeros((1, 72)), np.zeros((1, 10)), np.zeros((1, 3)), [1.0]
        ).accepted[0]
    _assert_intact(path, acknowledged)


# -- never a store over an existing file, never a write into a damaged one ----------------------


@pytest.mark.parametrize("readonly", [False, True])
def test_an_empty_data_mdb_is_an_error_not_a_new_store(tmp_path, readonly):
    path = tmp_path / "fits"
    path.mkdir()
    (path / "data.mdb").touch()
    with pytest.raises(DamagedStoreError, match="0 bytes"):
        FitsStore(path, readonly=readonly)
    assert (path / "data.mdb").stat().st_size == 0  # left as found, for the user to look at


def test_a_directory_with_other_files_is_not_made_into_a_store(tmp_path):
    path = tmp_path / "results"
    path.mkdir()
    (path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="holds other files .*notes.txt"):
        FitsStore(path)
    assert sorted(p.name for p in path.iterdir()) == ["notes.txt"]


def test_a_writer_refuses_a_damaged_store_and_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "fits"
    _fill(path)
    _damage(path, "zeroed")
    before = _digest(path)
    with pytest.raises(DamagedStoreError, match="is damaged .*--salvage"):
        FitsStore(path)
    assert _digest(path) == before


# -- damaged stores never crash ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["truncated", "zeroed", "random"])
def test_a_damaged_store_gives_one_clear_error_and_salvage_keeps_every_readable_fit(tmp_path, how):
    path = tmp_path / "fits"
    acknowledged = _fill(path)
    _damage(path, how)
    _one_clear_line(_spin("fits", "stats", "--store", path), "damaged")
    verify = _one_clear_line(_spin("fits", "verify", "--store", path), "--salvage")
    assert "truncated" in verify if how == "truncated" else "damaged" in verify
    # a reader that gets past the open check still ends in a sentence, not SIGBUS or an abort
    reader = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            from store import FitsStore, StoreError
            try:
                with FitsStore({str(path)!r}, readonly=True) as store:
                    store.get([f"h36m/{{i}}" for i in range({COUNT})])
            except StoreError as error:
                print("clear:", error)
                raise SystemExit(1)
        """),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert reader.returncode == 1 and "clear:" in reader.stdout, (reader.returncode, reader.stderr[-1000:])

    out = tmp_path / "salvaged"
    salvage = _spin("fits", "snapshot", "--store", path, "--out", out, "--salvage")
    assert salvage.returncode == 0, salvage.stdout + salvage.stderr
    assert verify_store(out).ok
    with FitsStore(out, readonly=True) as store:
        names = list(store.datasets())
        assert len(names) == 1
        got = store.get([k.replace("h36m", names[0]) for k in acknowledged["keys"]])
    present = np.flatnonzero(got["present"])
    lost = COUNT - len(present)
    # half a file keeps roughly half its leaf pages; one damaged page loses at most its own records
    assert (COUNT // 4 <= len(present) < COUNT) if how == "truncated" else (0 < lost <= 20), lost
    for name in FIELDS:  # every salvaged fit is bit-exactly the acknowledged one
        assert _same_bits(got[name][present], acknowledged[name][present]), name


# -- files appear complete or not at all --------------------------------------------------------

_KILLED_SNAPSHOT = textwrap.dedent(
    """
    import os, signal, sys
    import store.snapshot as snapshot
    from store import FitsStore

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[3] == "during-copy":
        snapshot._append = die  # killed after the copy has begun writing pages
    else:
        snapshot.publish_directory = die  # killed with the copy written but not yet renamed
    FitsStore(sys.argv[1], readonly=True).snapshot(sys.argv[2], repack=sys.argv[3] == "during-copy")
    """
)


@pytest.mark.parametrize("when", ["during-copy", "before-rename"])
def test_a_snapshot_killed_half_way_leaves_nothing_at_the_destination(tmp_path, when):
    path = tmp_path / "fits"
    acknowledged = _fill(path)
    dest = tmp_path / "snap"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_SNAPSHOT, str(path), str(dest), when],
        cwd=ROOT,
        timeout=60,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    assert not dest.exists()  # on main: dest/data.mdb of 0 bytes or half written
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".snap.")]
    assert leftovers and not (dest / "data.mdb").exists()  # only the hidden staging copy remains
    _assert_intact(path, acknowledged)
    again = _spin("fits", "snapshot", "--store", path, "--out", dest)
    assert again.returncode == 0, again.stderr
    _assert_intact(dest, acknowledged)


# -- map growth while a writer opens ------------------------------------------------------------

_OPENING_WRITER = textwrap.dedent(
    """
    import sys
    import lmdb
    import numpy as np
    import store.environment as environment

    real_open = lmdb.open

    def open_then_wait(*args, **kwargs):
        env = real_open(*args, **kwargs)
        print("opened", flush=True)
        sys.stdin.readline()  # the other process grows the map now
        return env

    environment.lmdb.open = open_then_wait
    from store import FitsStore

    with FitsStore(sys.argv[1], map_size=1 << 20) as fits:
        fits.declare_dataset("late", size=1)
        put = fits.put_if_better(["late/0"], np.zeros((1, 72)), np.zeros((1, 10)), np.zeros((1, 3)), [1.0])
        print("ok", bool(put.accepted[0]), flush=True)
    """
)


def test_a_writer_opening_while_another_grows_the_map_follows_the_growth(tmp_path):
    path = tmp_path / "fits"
    _fill(path, count=10)
    opening = subprocess.Popen(
        [sys.executable, "-c", _OPENING_WRITER, str(path)],
        cwd=ROOT,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert opening.stdout.readline().strip() == "opened"
        acknowledged = _fill(path, count=20000, dataset="big")  # grows the file far past 1 MiB
        opening.stdin.write("go\n")
        opening.stdin.flush()
        out, err = opening.communicate(timeout=60)
    finally:
        if opening.poll() is None:
            opening.kill()
    assert opening.returncode == 0 and "ok True" in out, err[-2000:]
    _assert_intact(path, acknowledged)


# -- a full disk -------------------------------------------------------------------------------


def test_a_full_disk_during_import_says_so_and_keeps_every_committed_fit(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path)
    rows = np.random.default_rng(2).standard_normal((60000, 82)).astype(np.float32)
    np.save(tmp_path / "more.npy", rows)
    limit = (path / "data.mdb").stat().st_size + (1 << 20)  # room for far less than 60000 fits
    result = _spin(
        "fits", "import", tmp_path / "more.npy", "--store", path, "--dataset", "more", limit_bytes=limit
    )
    _one_clear_line(result, "full", "every fit committed before it is kept")
    report = verify_store(path)
    assert report.ok, report.problems  # the metadata was not updated for the batch that failed
    _assert_intact(path, acknowledged)


def test_a_full_disk_during_export_and_snapshot_leaves_no_file(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path, count=5000)
    for args in (
        ("export", "--store", path, "--format", "h5", "--out", tmp_path / "all.h5"),
        ("export", "--store", path, "--format", "npz", "--dataset", "h36m", "--out", tmp_path / "f.npz"),
        ("snapshot", "--store", path, "--out", tmp_path / "snap"),
    ):
        _one_clear_line(_spin("fits", *args, limit_bytes=64 << 10), "full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fits"]  # no output, no temporary left
    _assert_intact(path, acknowledged)


# -- exports and imports that would surprise -----------------------------------------------------


def test_export_never_overwrites_without_force_and_checks_format_and_target(tmp_path):
    path = tmp_path / "fits"
    acknowledged = _fill(path)
    out = tmp_path / "fits.npz"
    out.write_bytes(b"precious")
    export = ("fits", "export", "--store", path, "--dataset", "h36m", "--format", "npz")
    _one_clear_line(_spin(*export, "--out", out), "already exists", "--force")
    assert out.read_bytes() == b"precious"
    _one_clear_line(_spin(*export, "--out", tmp_path / "fits.h5"), "extension")
    (tmp_path / "folder.npz").mkdir()
    _one_clear_line(_spin(*export, "--out", tmp_path / "folder.npz"), "is a directory")
    assert _spin(*export, "--out", out, "--force").returncode == 0
    with np.load(out) as archive:
        assert _same_bits(archive["loss"], acknowledged["loss"])
    _assert_intact(path, acknowledged)


def test_import_checks_its_input_before_creating_a_store(tmp_path):
    np.save(tmp_path / "bad.npy", np.full((4, 82), np.nan, np.float32))
    _one_clear_line(
        _spin("fits", "import", tmp_path / "bad.npy", "--store", tmp_path / "new", "--dataset", "x"),
        "bad.npy",
        "row 0",
    )
    assert not (tmp_path / "new").exists()


def test_diff_and_stats_treat_unscored_fits_as_unscored(tmp_path):
    np.save(tmp_path / "static.npy", np.zeros((6, 82), np.float32))
    before, after = tmp_path / "before", tmp_path / "after"
    assert (
        _spin("fits", "import", tmp_path / "static.npy", "--store", before, "--dataset", "lsp").returncode
        == 0
    )
    assert _spin("fits", "snapshot", "--store", before, "--out", after).returncode == 0
    with FitsStore(after) as store:  # two fits get their first real loss
        store.put_if_better(
            ["lsp/0", "lsp/1"], np.zeros((2, 72)), np.zeros((2, 10)), np.zeros((2, 3)), [5.0, 7.0]
        )
    diff = json.loads(_spin("fits", "diff", before, after, "--json").stdout)["lsp"]
    assert (diff["improved"], diff["scored"], diff["max_improvement"]) == (0, 2, 0.0)
    stats = json.loads(_spin("fits", "stats", "--store", after, "--json").stdout)["lsp"]
    assert (stats["count"], stats["unscored"]) == (6, 4)
    assert "4 fits are unscored" in _spin("fits", "stats", "--store", after).stdout


def test_fault_helpers_compare_bits_not_values():
    assert not _same_bits(np.array([0.0]), np.array([-0.0]))  # the bit-exact checks above can fail
