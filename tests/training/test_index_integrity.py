"""The fit the trainer reads for a sample is that sample's own: under shuffling, two mixed datasets,
two data-loader workers, flips and rotations, and across a resume.

Every key gets a distinctive fit in the store (betas encode dataset and row, the pose is random);
the test checks what the trainer's supervision step received for each key of every batch.
"""

import numpy as np
import torch

from spin.data.augment import canonicalise_pose
from spin.training.trainer import Trainer
from store import FitsStore

DATASET_CODE = {"a": 1.0, "b": 2.0}


def _fill_store(path, sizes):
    rng = np.random.default_rng(7)
    store = FitsStore(path)
    table = {}
    for name, size in sizes.items():
        keys = [f"{name}/{i}" for i in range(size)]
        pose = (0.3 * rng.normal(size=(size, 72))).astype(np.float32)
        betas = np.zeros((size, 10), np.float32)
        betas[:, 0], betas[:, 1] = DATASET_CODE[name], np.arange(size) / 10
        store.put_if_better(keys, pose, betas, np.tile([0.0, 0.0, 40.0], (size, 1)), np.full(size, 5.0))
        table.update({key: pose[i] for i, key in enumerate(keys)})
    store.close()
    return table


def _run(config, run_dir, resume=False):
    seen = []

    def record(trainer):
        batch, sup = trainer.last_batch, trainer.last_supervision
        seen.append({"keys": list(batch["key"]), "index": batch["sample_index"].tolist(),
                     "flip": batch["flip"].clone(), "rot": batch["rot"].clone(),
                     "has_smpl": batch["has_smpl"].clone(),
                     "pose": sup.pose.cpu().clone(), "betas": sup.betas.cpu().clone(),
                     "from_fit": sup.from_fit.cpu().clone()})

    with Trainer(config, run_dir, resume=resume, on_step=record) as trainer:
        trainer.train()
    return seen


def test_supervision_belongs_to_the_sample_under_mixing_workers_flips_and_resume(tmp_path, half_gt_data,
                                                                                   tiny_train_config):
    store_path = tmp_path / "fits.lmdb"
    table = _fill_store(store_path, {"a": 16, "b": 10})
    extra = {"data.num_workers": 2, "store": str(store_path), "rounds.steps_per_round": 6,
             "rounds.checkpoint_every": 3, "rounds.overlay_images": 0, "rounds.snapshot_store": "false",
             "data.augment.flip_prob": 0.5, "data.augment.rot_zero_prob": 0.3}
    config = tiny_train_config(half_gt_data, "off", tmp_path / "full", datasets=("a", "b"), **extra)
    full = _run(config, tmp_path / "full")

    checked = flips = rotations = 0
    names = set()
    for step in full:
        for i, key in enumerate(step["keys"]):
            name, row = key.split("/")
            names.add(name)
            assert int(row) == step["index"][i]
            if step["has_smpl"][i]:
                assert not step["from_fit"][i]  # ground truth overrides the fit
                continue
            assert step["from_fit"][i]
            assert step["betas"][i, 0] == DATASET_CODE[name]
            assert abs(step["betas"][i, 1] - int(row) / 10) < 1e-6
            back = canonicalise_pose(step["pose"][i:i + 1], step["flip"][i:i + 1], step["rot"][i:i + 1])
            assert torch.allclose(torch.as_tensor(back[0]), torch.as_tensor(table[key]), atol=1e-4), key
            checked += 1
            flips += int(step["flip"][i])
            rotations += int(step["rot"][i] != 0)
    assert names == {"a", "b"} and checked >= 8 and flips >= 2 and rotations >= 2

    # Resume: stop after 3 steps (last.pt), continue; the batches are the same as without the stop.
    first = _run(tiny_train_config(half_gt_data, "off", tmp_path / "part", datasets=("a", "b"),
                                   **{**extra, "rounds.steps_per_round": 3}), tmp_path / "part")
    resumed_config = tiny_train_config(half_gt_data, "off", tmp_path / "part", datasets=("a", "b"), **extra)
    rest = _run(resumed_config, tmp_path / "part", resume=True)
    assert [s["keys"] for s in first + rest] == [s["keys"] for s in full]
    for a, b in zip(first + rest, full, strict=True):
        assert torch.equal(a["flip"], b["flip"]) and torch.equal(a["rot"], b["rot"])
        assert torch.equal(a["pose"], b["pose"])
