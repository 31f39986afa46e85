"""Loading SMPL files: chumpy pickles without chumpy, .npz, and one clear error per bad input."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse
import torch

from spin.body import BodyModel
from spin.body.loading import load_body_arrays, load_extra_regressor, save_body_npz
from spin.errors import UserError

FAKE_CHUMPY = textwrap.dedent(
    """
    import numpy as np

    class Ch:
        # Like chumpy's Ch: the array lives in the instance state under 'x', next to bookkeeping.
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()
            self._itr = None
    """
)


def _official_like_dict(model_dict: dict) -> dict:
    """The synthetic arrays in the official SMPL layout: float64, uint32 kintree, sparse J_regressor."""
    kintree = model_dict["kintree_table"].astype(np.int64)
    kintree[0, 0] = 4294967295
    return {
        "v_template": model_dict["v_template"],
        "shapedirs": model_dict["shapedirs"],
        "posedirs": model_dict["posedirs"].astype(np.float64),
        "J_regressor": scipy.sparse.csc_matrix(model_dict["J_regressor"]),
        "weights": model_dict["weights"],
        "kintree_table": kintree.astype(np.uint32),
        "f": model_dict["f"].astype(np.uint32),
        "J": model_dict["J"],
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def _write_chumpy_pickle(tmp_path, data: dict, chumpy_keys: tuple[str, ...], protocol: int):
    """Pickle ``data`` with some arrays wrapped in a fake ``chumpy.ch.Ch``, then make chumpy unimportable."""
    pkg = tmp_path / "fake_site" / "chumpy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ch.py").write_text(FAKE_CHUMPY)
    sys.path.insert(0, str(pkg.parent))
    try:
        import chumpy.ch

        wrapped = {k: (chumpy.ch.Ch(v) if k in chumpy_keys else v) for k, v in data.items()}
        path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
        with open(path, "wb") as fh:
            pickle.dump(wrapped, fh, protocol=protocol)
    finally:
        sys.path.remove(str(pkg.parent))
        for name in [m for m in sys.modules if m == "chumpy" or m.startswith("chumpy.")]:
            del sys.modules[name]
    assert importlib.util.find_spec("chumpy") is None
    assert b"chumpy" in path.read_bytes()
    return path


def test_chumpy_pickle_loads_without_chumpy(tmp_path, model_dict, synth_files):
    data = _official_like_dict(model_dict)
    path = _write_chumpy_pickle(tmp_path, data, ("v_template", "shapedirs", "posedirs", "weights", "J"), 2)
    arrays = load_body_arrays(path, joint_regressor_extra=synth_files.joint_regressor_extra)
    np.testing.assert_array_equal(arrays.v_template, model_dict["v_template"])
    np.testing.assert_array_equal(arrays.J_regressor, model_dict["J_regressor"])  # sparse -> dense
    np.testing.assert_array_equal(arrays.parents[1:], model_dict["kintree_table"][0, 1:])
    assert arrays.parents[0] == -1
    assert arrays.f.dtype == np.int64

    body = BodyModel.from_file(path, joint_regressor_extra=synth_files.joint_regressor_extra)
    reference = BodyModel.from_files(synth_files)
    pose = 0.3 * torch.randn(3, 72, generator=torch.Generator().manual_seed(0))
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(body.joints(pose, betas), reference.joints(pose, betas))


def test_python2_style_protocol0_chumpy_object(tmp_path):
    """Protocol 0 rebuilds objects through copy_reg._reconstructor without calling __init__."""
    from spin.body.loading import _BodyModelUnpickler, _to_plain

    array = np.arange(12.0).reshape(4, 3)
    path = _write_chumpy_pickle(tmp_path, {"v_template": array, "bs_style": "lbs"}, ("v_template",), 0)
    with open(path, "rb") as fh:
        raw = _BodyModelUnpickler(fh, encoding="latin1").load()
    np.testing.assert_array_equal(_to_plain(raw["v_template"]), array)


def test_npz_roundtrip_carries_extra_regressor(tmp_path, synth_files, body):
    arrays = load_body_arrays(synth_files.model)
    assert arrays.J_regressor_extra is not None and arrays.synthetic
    out = save_body_npz(arrays, tmp_path / "model.npz")
    from_npz = BodyModel.from_file(out)  # the extra regressor travels inside the file
    pose = 0.3 * torch.randn(2, 72, generator=torch.Generator().manual_seed(2))
    betas = torch.zeros(2, 10)
    torch.testing.assert_close(from_npz(pose, betas).vertices, body(pose, betas).vertices)
    torch.testing.assert_close(from_npz.joints(pose, betas), body.joints(pose, betas))


def test_extra_regressor_path_overrides_the_file(tmp_path, synth_files, model_dict):
    other = np.zeros((9, 6890))
    other[:, 0] = 1.0  # every extra joint = vertex 0
    np.save(tmp_path / "extra.npy", other)
    body = BodyModel.from_file(synth_files.model, joint_regressor_extra=tmp_path / "extra.npy")
    out = body(torch.zeros(1, 72), torch.zeros(1, 10))
    v0 = torch.as_tensor(model_dict["v_template"][0], dtype=torch.float32)
    torch.testing.assert_close(out.joints[0, 39], v0)  # Pelvis (MPII) is extra row 4


def _save_dict(path, data):
    with open(path, "wb") as fh:
        pickle.dump(data, fh)
    return path


def _assert_user_error(match: str, fn, *args, **kwargs):
    with pytest.raises(UserError, match=match) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    msg = _assert_user_error("does not exist", load_body_arrays, tmp_path / "nope.pkl")
    assert "nope.pkl" in msg


def test_folder_and_wrong_suffix(tmp_path):
    _assert_user_error("holds no SMPL model file", load_body_arrays, tmp_path)
    (tmp_path / "model.txt").write_text("hello")
    _assert_user_error(r"must end in \.pkl or \.npz", load_body_arrays, tmp_path / "model.txt")


def test_not_a_pickle_or_not_a_dict(tmp_path):
    (tmp_path / "garbage.pkl").write_bytes(b"\x00\x01 definitely not a pickle")
    _assert_user_error("could not be read as an SMPL model", load_body_arrays, tmp_path / "garbage.pkl")
    _assert_user_error("holds a list", load_body_arrays, _save_dict(tmp_path / "list.pkl", [1, 2]))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    _assert_user_error("lacks 'v_template'", load_body_arrays, tmp_path / "other.npz")


def test_missing_key(tmp_path, model_dict):
    data = dict(model_dict)
    del data["posedirs"]
    msg = _assert_user_error("is not an SMPL model", load_body_arrays, _save_dict(tmp_path / "m.pkl", data))
    assert "'posedirs'" in msg and "m.pkl" in msg


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("v_template", np.zeros((100, 3))),
        ("weights", np.zeros((6890, 23))),
        ("f", np.zeros((10, 4), int)),
        ("posedirs", np.zeros((6890, 3, 10))),
    ],
)
def test_wrong_shape(tmp_path, model_dict, key, bad):
    data = dict(model_dict, **{key: bad})
    msg = _assert_user_error("has shape", load_body_arrays, _save_dict(tmp_path / "m.pkl", data))
    assert repr(key) in msg and "m.pkl" in msg


def test_nan_and_bad_faces_and_tree(tmp_path, model_dict):
    weights = model_dict["weights"].copy()
    weights[5, 3] = np.nan
    _assert_user_error(
        "NaN", load_body_arrays, _save_dict(tmp_path / "nan.pkl", dict(model_dict, weights=weights))
    )
    faces = model_dict["f"].copy()
    faces[0, 0] = 7000
    _assert_user_error("outside", load_body_arrays, _save_dict(tmp_path / "f.pkl", dict(model_dict, f=faces)))
    tree = model_dict["kintree_table"].copy()
    tree[0, 3] = 5
    _assert_user_error(
        "kinematic tree",
        load_body_arrays,
        _save_dict(tmp_path / "t.pkl", dict(model_dict, kintree_table=tree)),
    )


def test_extra_regressor_errors(tmp_path, model_dict):
    np.save(tmp_path / "extra.npy", np.zeros((8, 6890)))
    msg = _assert_user_error("has shape", load_extra_regressor, tmp_path / "extra.npy")
    assert "extra.npy" in msg
    _assert_user_error("does not exist", load_extra_regressor, tmp_path / "missing.npy")
    data = {k: v for k, v in model_dict.items() if k != "J_regressor_extra"}
    path = _save_dict(tmp_path / "no_extra.pkl", data)
    assert load_body_arrays(path).J_regressor_extra is None
    _assert_user_error("--joint-regressor-extra", BodyModel.from_file, path)
