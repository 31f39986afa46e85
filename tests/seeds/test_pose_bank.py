"""The unpaired body bank: loading a user's .npz, the generated default, deterministic resumable sampling."""

from __future__ import annotations

import numpy as np
import pytest

from spin.body.pose_sampler import JOINT_LIMITS
from spin.data.pose_bank import PoseBank, build_pose_bank, load_pose_bank, synthetic_pose_bank
from spin.errors import UserError


def write_bank(path, n=20, shape_key="shape", betas_width=10, pose_width=72, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"pose": rng.normal(0, 0.3, (n, pose_width)), shape_key: rng.normal(0, 1, (n, betas_width))}
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("shape_key,width", [("shape", 10), ("betas", 10), ("betas", 16)])
def test_a_users_npz_loads_under_either_shape_key(tmp_path, shape_key, width):
    arrays = write_bank(tmp_path / "mocap.npz", shape_key=shape_key, betas_width=width)
    bank = load_pose_bank(tmp_path / "mocap.npz")
    assert len(bank) == 20 and bank.pose.dtype == np.float32
    np.testing.assert_allclose(bank.pose, arrays["pose"], rtol=1e-6)
    np.testing.assert_allclose(bank.betas, arrays[shape_key][:, :10], rtol=1e-6)


@pytest.mark.parametrize("kwargs,words", [
    ({"shape_key": "gender"}, ["mocap.npz", "'shape' or 'betas'"]),
    ({"pose_width": 69}, ["mocap.npz", "'pose'", "(N,72)"]),
    ({"betas_width": 8}, ["mocap.npz", "'shape'"]),
])
def test_a_wrong_file_names_the_file_and_the_key(tmp_path, kwargs, words):
    write_bank(tmp_path / "mocap.npz", **kwargs)
    with pytest.raises(UserError) as err:
        load_pose_bank(tmp_path / "mocap.npz")
    message = str(err.value)
    assert all(w in message for w in words) and message.count("\n") == 0


def test_missing_pose_key_nonfinite_rows_and_missing_files_are_user_errors(tmp_path):
    np.savez(tmp_path / "no_pose.npz", shape=np.zeros((3, 10)))
    with pytest.raises(UserError, match="no key 'pose'"):
        load_pose_bank(tmp_path / "no_pose.npz")
    pose = np.zeros((3, 72))
    pose[1, 5] = np.nan
    np.savez(tmp_path / "nan.npz", pose=pose, shape=np.zeros((3, 10)))
    with pytest.raises(UserError, match="non-finite"):
        load_pose_bank(tmp_path / "nan.npz")
    with pytest.raises(UserError, match="does not exist"):
        load_pose_bank(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(UserError, match="not a readable"):
        load_pose_bank(tmp_path / "text.npz")


def test_sampling_is_deterministic_per_seed_and_resumes_from_its_state(tmp_path):
    write_bank(tmp_path / "b.npz", n=50)
    a, b = build_pose_bank(tmp_path / "b.npz", 0, seed=3), build_pose_bank(tmp_path / "b.npz", 0, seed=3)
    other = build_pose_bank(tmp_path / "b.npz", 0, seed=4)
    first = a.sample(8)
    assert all(np.array_equal(x, y) for x, y in zip(first, b.sample(8), strict=True))
    assert not np.array_equal(first[0], other.sample(8)[0])
    state = a.state_dict()
    expected = a.sample(8)
    fresh = build_pose_bank(tmp_path / "b.npz", 0, seed=99)
    fresh.load_state_dict(state)
    assert all(np.array_equal(x, y) for x, y in zip(expected, fresh.sample(8), strict=True))


def test_the_generated_bank_follows_the_synthetic_distribution_on_its_own_stream():
    bank = synthetic_pose_bank(300, seed=0)
    assert bank.pose.shape == (300, 72) and bank.betas.shape == (300, 10)
    body = bank.pose[:, 3:].reshape(-1, 23, 3)
    lo, hi = JOINT_LIMITS[1:, :, 0], JOINT_LIMITS[1:, :, 1]
    assert np.all((body >= lo - 1e-5) & (body <= hi + 1e-5))
    assert np.abs(bank.betas).max() <= 2.5 + 1e-6 and 0.7 < bank.betas.std() < 1.1
    # generated deterministically, and different per seed
    assert np.array_equal(bank.pose, synthetic_pose_bank(300, seed=0).pose)
    assert not np.array_equal(bank.pose, synthetic_pose_bank(300, seed=1).pose)
    from spin.data.synthetic import SynthConfig, sample_split

    dataset_like = sample_split(300, np.random.default_rng(0), SynthConfig())
    assert not np.array_equal(bank.pose, dataset_like.pose)


def test_bank_rejects_bad_arrays_and_sizes():
    with pytest.raises(ValueError):
        PoseBank(np.zeros((0, 72)), np.zeros((0, 10)))
    with pytest.raises(UserError, match="bank_size"):
        synthetic_pose_bank(0)


def test_ranks_split_one_draw_and_keep_equal_generators(tmp_path):
    write_bank(tmp_path / "b.npz", n=500)
    banks = [build_pose_bank(tmp_path / "b.npz", 0, seed=1) for _ in range(3)]
    single = build_pose_bank(tmp_path / "b.npz", 0, seed=1).sample(12)[1].numpy()
    parts = [bank.sample(4, rank=rank, world_size=3)[1].numpy() for rank, bank in enumerate(banks)]
    # the three ranks' bodies are the single process's 12, in rank order; their generators stay equal
    np.testing.assert_array_equal(np.concatenate(parts), single)
    assert banks[0].state_dict() == banks[1].state_dict() == banks[2].state_dict()
