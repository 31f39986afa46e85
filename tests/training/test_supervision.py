"""SPIN's supervision rules, and reading a batch's fits from a real store by key."""

import numpy as np
import pytest
import torch

from spin.data.augment import augment_pose, canonicalise_pose
from spin.training.supervision import CollateWithFits, StoreFitReader, build_supervision, empty_fits
from store import FitsStore

rng = np.random.default_rng(0)


def _fits(n, loss):
    return {"pose": (0.2 * rng.normal(size=(n, 72))).astype(np.float32),
            "betas": rng.normal(size=(n, 10)).clip(-2, 2).astype(np.float32),
            "loss": np.asarray(loss, dtype=np.float64), "present": np.isfinite(loss)}


def _call(fits, flip=None, rot=None, has_smpl=None, threshold=100.0):
    n = len(fits["loss"])
    flip = torch.zeros(n, dtype=torch.bool) if flip is None else flip
    rot = torch.zeros(n) if rot is None else rot
    has_smpl = torch.zeros(n, dtype=torch.bool) if has_smpl is None else has_smpl
    gt_pose, gt_betas = torch.full((n, 72), 0.5), torch.full((n, 10), 0.25)
    return build_supervision(fits, flip, rot, gt_pose, gt_betas, has_smpl, threshold)


def test_threshold_rejects_fits_at_or_above_it_and_absent_keys():
    sup = _call(_fits(4, [10.0, 99.9, 100.0, np.inf]))
    assert sup.valid.tolist() == [True, True, False, False]
    assert sup.from_fit.tolist() == [True, True, False, False]
    assert sup.present.tolist() == [True, True, True, False]


def test_extreme_betas_supervise_as_zero():
    fits = _fits(2, [1.0, 1.0])
    fits["betas"][1, 4] = -3.5
    sup = _call(fits)
    assert torch.equal(sup.betas[1], torch.zeros(10)) and sup.valid[1]
    assert torch.allclose(sup.betas[0], torch.as_tensor(fits["betas"][0]))


def test_ground_truth_overrides_fits():
    sup = _call(_fits(3, [1.0, 500.0, np.inf]), has_smpl=torch.tensor([True, True, False]))
    assert sup.valid.tolist() == [True, True, False] and sup.from_fit.tolist() == [False, False, False]
    assert torch.all(sup.pose[:2] == 0.5) and torch.all(sup.betas[:2] == 0.25)


def test_fits_are_moved_into_the_augmented_frame():
    fits = _fits(3, [1.0, 1.0, 1.0])
    flip, rot = torch.tensor([False, True, True]), torch.tensor([0.0, 0.0, 30.0])
    sup = _call(fits, flip=flip, rot=rot)
    expected = augment_pose(torch.as_tensor(fits["pose"]), flip, rot)
    assert torch.allclose(sup.pose, expected, atol=1e-6)
    back = torch.as_tensor(canonicalise_pose(sup.pose, flip, rot))
    assert torch.allclose(back, torch.as_tensor(fits["pose"]), atol=1e-5)


def test_collate_reads_each_samples_own_fit(tmp_path):
    store = FitsStore(tmp_path / "fits.lmdb")
    keys = [f"a/{i}" for i in range(6)]
    pose = np.zeros((6, 72), np.float32)
    pose[:, 3] = np.arange(6) / 10  # distinctive per key
    store.put_if_better(keys, pose, np.zeros((6, 10)), np.zeros((6, 3)), np.arange(6) + 1.0)
    store.close()
    collate = CollateWithFits(StoreFitReader(tmp_path / "fits.lmdb"), threshold=100.0)
    order = [4, 0, 7, 2]  # a/7 has no fit
    samples = [{"key": f"a/{i}", "flip": torch.tensor(False), "rot": torch.tensor(0.0),
                "pose": torch.zeros(72), "betas": torch.zeros(10), "has_smpl": torch.tensor(False)}
               for i in order]
    batch = collate(samples)
    sup = batch["supervision"]
    assert sup.present.tolist() == [True, True, False, True]
    assert torch.allclose(sup.pose[:, 3], torch.tensor([0.4, 0.0, 0.0, 0.2]))
    assert torch.allclose(sup.fit_loss[[0, 1, 3]], torch.tensor([5.0, 1.0, 3.0]))


def test_reader_of_a_store_not_yet_created_reads_absent(tmp_path):
    fits = StoreFitReader(tmp_path / "missing.lmdb").read(["a/0", "a/1"])
    assert not fits["present"].any() and np.isinf(fits["loss"]).all()
    assert set(empty_fits(2)) == set(fits)


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
])
def test_supervision_moves_between_devices(device):
    cpu = _call(_fits(2, [1.0, 1.0]))
    sup = cpu.to(device)
    for name in cpu.__dataclass_fields__:
        moved = getattr(sup, name)
        assert moved.device.type == device
        assert torch.equal(moved.cpu(), getattr(cpu, name))  # the values travel unchanged
