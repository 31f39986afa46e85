"""--body-model DIR: smplx / SPIN folder layouts, extras found beside the models, clear errors."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from spin.body import resolve_body_files
from spin.body.folders import scan_body_folder
from spin.body.loading import load_body_arrays
from spin.cli.body import body_app
from spin.errors import UserError

LAYOUTS = {
    "spin": {"smpl/SMPL_NEUTRAL.pkl": "model", "smpl/SMPL_MALE.pkl": "model_male",
             "smpl/SMPL_FEMALE.pkl": "model_female", "J_regressor_extra.npy": "joint_regressor_extra",
             "J_regressor_h36m.npy": "joint_regressor_h36m", "gmm_08.pkl": "prior",
             "smpl_mean_params.npz": "mean_params"},
    "smplx_flat": {"SMPL_NEUTRAL.pkl": "model", "SMPL_MALE.pkl": "model_male",
                   "SMPL_FEMALE.pkl": "model_female"},
    "official_names": {"smpl/basicmodel_neutral_lbs_10_207_0_v1.0.0.pkl": "model",
                       "smpl/basicmodel_m_lbs_10_207_0_v1.1.0.pkl": "model_male",
                       "smpl/basicModel_f_lbs_10_207_0_v1.0.0.pkl": "model_female",
                       "gmm_08.pkl": "prior"},
}


def _lay_out(root, layout, synth_files):
    for rel, role in layout.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(getattr(synth_files, role), target)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_naming_variant_resolves(tmp_path, synth_files, body_cache, monkeypatch, name):
    monkeypatch.setenv("SPIN_CACHE", str(body_cache[0]))
    root = tmp_path / "data"
    _lay_out(root, LAYOUTS[name], synth_files)
    files = resolve_body_files(root)
    for rel, role in LAYOUTS[name].items():
        assert getattr(files, role) == root / rel, role
    if "prior" not in LAYOUTS[name].values():  # not in the folder: the synthetic set's, as documented
        assert files.prior == synth_files.prior
    assert load_body_arrays(root).path == root / next(iter(LAYOUTS[name]))


def test_npz_models_and_extras_in_the_parent(tmp_path, synth_files, body_cache, monkeypatch):
    monkeypatch.setenv("SPIN_CACHE", str(body_cache[0]))
    arrays = load_body_arrays(synth_files.model)
    from spin.body.loading import save_body_npz

    save_body_npz(arrays, tmp_path / "smpl" / "SMPL_NEUTRAL.npz")
    shutil.copy(synth_files.joint_regressor_h36m, tmp_path / "J_regressor_h36m.npy")
    files = resolve_body_files(tmp_path / "smpl")  # the models folder itself; extras one level up
    assert files.model == tmp_path / "smpl" / "SMPL_NEUTRAL.npz"
    assert files.joint_regressor_h36m == tmp_path / "J_regressor_h36m.npy"
    assert files.model_male is None


def test_an_empty_folder_says_what_was_looked_for(tmp_path):
    (tmp_path / "readme.txt").write_text("no models here")
    with pytest.raises(UserError, match="holds no SMPL model file") as info:
        resolve_body_files(tmp_path)
    assert str(tmp_path) in str(info.value) and "SMPL_NEUTRAL" in str(info.value)


def test_a_folder_with_only_gendered_models_says_so(tmp_path, synth_files):
    shutil.copy(synth_files.model_male, tmp_path / "SMPL_MALE.pkl")
    with pytest.raises(UserError, match="no neutral SMPL model") as info:
        resolve_body_files(tmp_path)
    assert "SMPL_MALE.pkl" in str(info.value)
    assert scan_body_folder(tmp_path).models == {"male": tmp_path / "SMPL_MALE.pkl"}


def test_body_info_describes_a_folder(tmp_path, synth_files):
    _lay_out(tmp_path, LAYOUTS["spin"], synth_files)
    result = CliRunner().invoke(body_app, ["info", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for text in ("neutral model", "SMPL_FEMALE.pkl", "J_regressor_h36m.npy", "gmm_08.pkl", "6890"):
        assert text in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(body_app, ["info", str(empty)])
    assert result.exit_code != 0 and "not found" in result.output
    assert isinstance(result.exception, UserError) and "holds no SMPL model file" in str(result.exception)


def test_convert_does_not_overwrite_without_force(tmp_path, synth_files):
    out = tmp_path / "m.npz"
    out.write_bytes(b"precious")
    result = CliRunner().invoke(body_app, ["convert", str(synth_files.model), str(out)])
    assert isinstance(result.exception, UserError) and "already exists" in str(result.exception)
    assert out.read_bytes() == b"precious"
    result = CliRunner().invoke(body_app, ["convert", str(synth_files.model), str(out), "--force"])
    assert result.exit_code == 0 and load_body_arrays(out).v_template.shape == (6890, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left


def test_synth_onto_a_file_is_a_clear_error(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    result = CliRunner().invoke(body_app, ["synth", "--out", str(target)])
    assert isinstance(result.exception, UserError) and "is a file, not a folder" in str(result.exception)
