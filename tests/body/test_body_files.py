"""resolve_body_files: the synthetic set on first use (atomic, race-safe), user paths, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import spin.body.synthetic as synthetic
from spin.body.files import (
    BodyFiles,
    ensure_synthetic_body,
    load_mean_params,
    resolve_body_files,
    synthetic_dir,
)
from spin.errors import UserError


def _copy_set(src: BodyFiles, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.model.parent.iterdir():  # the whole set, whatever files it holds
        if path.is_file() and path.name != "synthetic_version.txt":
            shutil.copy(path, dst / path.name)


def test_first_use_generated_into_the_cache(body_cache):
    cache, files = body_cache
    assert files.model == cache / "synthetic_body_seed0" / "SMPL_NEUTRAL.pkl"
    for path in (files.model, files.joint_regressor_extra, files.prior, files.mean_params):
        assert path.is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_existing_set_is_reused(body_cache, monkeypatch):
    cache, files = body_cache
    monkeypatch.setenv("SPIN_CACHE", str(cache))
    monkeypatch.setattr(
        synthetic, "synthesize_body", lambda *a, **k: pytest.fail("regenerated a complete set")
    )
    assert resolve_body_files() == files


def test_lost_race_uses_the_winner(tmp_path, monkeypatch, synth_files):
    """Another process finishes first: our rename fails, we use its set and remove our temp folder."""
    monkeypatch.setenv("SPIN_CACHE", str(tmp_path))
    target = synthetic_dir(0)

    def slow_writer(out_dir, seed=0):
        _copy_set(synth_files, out_dir)
        _copy_set(synth_files, target)  # the winner appears while we were writing
        (target / "synthetic_version.txt").write_text(f"{synthetic.SYNTHETIC_VERSION}\n")
        (target / "winner").write_text("")
        return None

    monkeypatch.setattr(synthetic, "synthesize_body", slow_writer)
    files = ensure_synthetic_body(0)
    assert files.model == target / "SMPL_NEUTRAL.pkl" and (target / "winner").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_body_seed0"]


def test_stale_set_is_replaced(tmp_path, monkeypatch, synth_files):
    monkeypatch.setenv("SPIN_CACHE", str(tmp_path))
    target = synthetic_dir(0)
    _copy_set(synth_files, target)
    (target / "synthetic_version.txt").write_text("0\n")
    monkeypatch.setattr(synthetic, "synthesize_body", lambda out_dir, seed=0: _copy_set(synth_files, out_dir))
    files = ensure_synthetic_body(0)
    assert (target / "synthetic_version.txt").read_text().strip() == str(synthetic.SYNTHETIC_VERSION)
    assert files.prior.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic_body_seed0"]


def test_user_model_keeps_its_own_extra_regressor(body_cache, monkeypatch, synth_files):
    monkeypatch.setenv("SPIN_CACHE", str(body_cache[0]))
    files = resolve_body_files(body_model=synth_files.model)
    assert files.model == synth_files.model
    assert files.joint_regressor_extra is None  # never the synthetic regressor for a user's mesh
    assert files.prior == synth_files.prior and files.mean_params == synth_files.mean_params
    files = resolve_body_files(
        body_model=synth_files.model, joint_regressor_extra=synth_files.joint_regressor_extra
    )
    assert files.joint_regressor_extra == synth_files.joint_regressor_extra


@pytest.mark.parametrize("arg", ["body_model", "joint_regressor_extra", "prior", "mean_params"])
def test_missing_user_paths(tmp_path, arg):
    with pytest.raises(UserError, match="does not exist") as info:
        resolve_body_files(**{arg: tmp_path / "missing.file"})
    assert "missing.file" in str(info.value)


def test_mean_params_errors(tmp_path, synth_files):
    np.savez(tmp_path / "bad.npz", pose=np.zeros(144), shape=np.zeros(10))
    with pytest.raises(UserError, match="lacks the array 'cam'"):
        load_mean_params(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", pose=np.zeros(72), shape=np.zeros(10), cam=np.zeros(3))
    with pytest.raises(UserError, match="'pose' has 72 numbers, expected 144"):
        load_mean_params(tmp_path / "short.npz")
    with pytest.raises(UserError, match="does not exist"):
        load_mean_params(tmp_path / "none.npz")
    assert load_mean_params(synth_files.mean_params)["cam"].shape == (3,)
