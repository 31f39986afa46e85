"""The synthetic generator's output is pinned (to float64 noise across CPUs, bit for bit within one
machine), and the H36M-style regressor and gendered variants are consistent with the neutral model."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spin.body.synthetic import build_model_arrays, gendered_arrays, h36m_regressor

# build_model_arrays(0), pinned. Integer arrays and strings exactly; float arrays by their norm and sum
# to float64 noise: numpy picks SIMD kernels (exp, sin, ...) by CPU, so the same seed is bit-identical
# on one machine but may differ in the last bits on another (a bit-level hash failed on a new CPU).
FLOAT_PRINTS = {  # key: (shape, Frobenius norm, sum)
    "J": ((24, 3), 2.999594156529787, 1.1922371230684772),
    "J_regressor": ((24, 6890), 0.8005540973737111, 24.0),
    "J_regressor_extra": ((9, 6890), 0.7828147748411387, 9.0),
    "posedirs": ((6890, 3, 207), 2.2791613853256774, 0.8634684185388046),
    "shapedirs": ((6890, 3, 10), 3.1938293473673642, -17.51935203032346),
    "v_template": ((6890, 3), 51.023489880529965, 424.127678712835),
    "weights": ((6890, 24), 78.58309001215098, 6890.0),
}
INT_SUMS = {"f": ((13696, 3), 141173144), "kintree_table": ((2, 24), 488),
            "vert_sym_idxs": ((6890,), 23732605)}
STRINGS = {"bs_style": "lbs", "bs_type": "lrotmin",
           "spin_synthetic": "synthetic SMPL stand-in v2, seed 0; not SMPL"}


def _digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        h.update(key.encode())
        if isinstance(value, np.ndarray):
            h.update(str(value.dtype).encode())
            h.update(str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
        else:
            h.update(str(value).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def arrays():
    return build_model_arrays(0)


def test_generator_output_is_pinned(arrays):
    assert set(arrays) == set(FLOAT_PRINTS) | set(INT_SUMS) | set(STRINGS)
    for key, (shape, norm, total) in FLOAT_PRINTS.items():
        value = arrays[key].astype(np.float64)
        assert value.shape == shape, key
        np.testing.assert_allclose([np.linalg.norm(value), value.sum()], [norm, total], rtol=1e-9, atol=1e-9,
                                   err_msg=key)
    for key, (shape, total) in INT_SUMS.items():
        assert arrays[key].shape == shape and int(arrays[key].astype(np.int64).sum()) == total, key
    for key, text in STRINGS.items():
        assert str(arrays[key]) == text, key


def test_the_same_seed_is_bit_identical_in_another_process_with_other_threads(arrays):
    script = ("import sys; sys.path[:0] = [sys.argv[1]]; "
              "from tests.body.test_synthetic_identity import _digest; "
              "from spin.body.synthetic import build_model_arrays; print(_digest(build_model_arrays(0)))")
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", script, root], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == _digest(arrays)
    assert _digest(build_model_arrays(1)) != _digest(arrays)


def test_h36m_regressor_rows_are_convex_and_on_the_body(arrays):
    reg = h36m_regressor(arrays)
    assert reg.shape == (17, 6890)
    np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-9)
    assert np.all(reg >= 0)
    joints = reg @ arrays["v_template"]
    # Pelvis near the origin, head top the highest joint, left joints at +x and right at -x.
    assert np.linalg.norm(joints[0]) < 0.08
    assert joints[10, 1] == joints[:, 1].max()
    np.testing.assert_allclose(joints[1:4, 0], -joints[4:7, 0], atol=1e-6)
    assert np.all(joints[1:4, 0] > 0) and np.all(joints[11:14, 0] > 0)


def test_gendered_variants_differ_in_stature_and_keep_the_rig(arrays):
    male, female = gendered_arrays(arrays, "male"), gendered_arrays(arrays, "female")
    height = lambda a: np.ptp(a["v_template"][:, 1])  # noqa: E731
    assert height(male) > height(arrays) > height(female)
    for key in ("shapedirs", "posedirs", "J_regressor", "weights", "f"):
        assert male[key] is arrays[key] and female[key] is arrays[key]
    assert "male variant" in male["spin_synthetic"]
