"""HDF5 image packs and the `spin data` commands."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spin.cli.data import data_app
from spin.data.augment import AugmentParams
from spin.data.datasets import SpinImageDataset
from spin.data.h5pack import ImagePack, pack_images
from spin.errors import UserError


@pytest.fixture(scope="module")
def packed(noise_free_data, tmp_path_factory):
    out, paths = noise_free_data
    pack = tmp_path_factory.mktemp("pack") / "train.h5"
    pack_images(paths["train"], out, pack)
    return out, paths, pack


def assert_same_item(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], torch.Tensor):
            assert torch.equal(a[name], b[name]), name
        else:
            assert a[name] == b[name], name


def test_pack_gives_the_same_items_as_the_folder(packed):
    out, paths, pack = packed
    folder = SpinImageDataset(paths["train"], images=out, img_res=64)
    from_pack = SpinImageDataset(paths["train"], images=pack, img_res=64)
    assert from_pack.pack is not None and folder.pack is None
    params = AugmentParams(flip=True, rot_deg=12.0, scale=1.1, pixel_noise=(0.8, 1.0, 1.2))
    for i in range(len(folder)):
        assert_same_item(folder.item(i, params), from_pack.item(i, params))


def test_pack_holds_the_file_bytes_and_the_annotations(packed):
    out, paths, pack = packed
    with h5py.File(pack, "r") as h5, np.load(paths["train"]) as raw:
        names = h5["names"].asstr()[()]
        assert list(names) == [str(n) for n in raw["imgname"]]
        assert h5["images"][2].tobytes() == (out / names[2]).read_bytes()
        np.testing.assert_array_equal(h5["annotations/part"][()], raw["part"])


def test_pack_is_opened_lazily_and_reopened_after_pickling(packed):
    _, paths, pack = packed
    dataset = SpinImageDataset(paths["train"], images=pack, img_res=32)
    assert dataset.pack._file is None  # nothing open until the first read
    first = dataset[0]
    assert dataset.pack._file is not None
    clone = pickle.loads(pickle.dumps(dataset))  # what a spawned data-loader worker receives
    assert clone.pack._file is None
    assert_same_item(clone.item(0, AugmentParams()), dataset.item(0, AugmentParams()))
    assert first["key"] == clone[0]["key"]


def test_pack_in_data_loader_workers_reads_every_row_once(packed):
    _, paths, pack = packed
    dataset = SpinImageDataset(paths["train"], images=pack, img_res=32)
    dataset[0]  # the parent's open handle must not be used by the forked workers
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    keys = [key for batch in loader for key in batch["key"]]
    indices = [int(i) for batch in loader for i in batch["sample_index"]]
    assert sorted(keys) == sorted(f"synthetic_train/{i}" for i in range(len(dataset)))
    assert sorted(indices) == list(range(len(dataset)))


def test_pack_missing_images_or_wrong_pack_is_a_user_error(noise_free_data, packed, tmp_path):
    out, paths, pack = packed
    with pytest.raises(UserError, match="missing under"):
        pack_images(paths["train"], tmp_path, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    with pytest.raises(UserError, match="lacks"):
        SpinImageDataset(paths["test"], images=pack)  # a pack of the train images only
    (tmp_path / "plain.h5").write_bytes(b"not hdf5")
    with pytest.raises(UserError):
        ImagePack(tmp_path / "plain.h5")


def test_cli_synth_and_pack(tmp_path):
    runner = CliRunner()
    result = runner.invoke(data_app, ["synth", "--out", str(tmp_path / "d"), "--train", "3", "--test", "2",
                                      "--image-size", "48", "--seed", "4", "--gt-fraction", "0.34",
                                      "--joints3d-with-smpl-only"])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "d" / "synthetic_train.npz") as train:
        assert len(train["imgname"]) == 3 and train["has_smpl"].sum() == 1
        has_3d = train["S"][..., 3].max(1) > 0
        np.testing.assert_array_equal(has_3d, train["has_smpl"] > 0)
        assert not train["S"][~has_3d].any()
    result = runner.invoke(data_app, ["pack", "--data", str(tmp_path / "d" / "synthetic_test.npz"),
                                      "--images", str(tmp_path / "d"), "--out", str(tmp_path / "test.h5")])
    assert result.exit_code == 0, result.output
    assert len(ImagePack(tmp_path / "test.h5")) == 2
    result = runner.invoke(data_app, ["pack", "--data", str(tmp_path / "nope.npz"), "--images", str(tmp_path),
                                      "--out", str(tmp_path / "x.h5")])
    assert isinstance(result.exception, UserError)  # the console entry point prints it as one red line
