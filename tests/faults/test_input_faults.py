"""Fault injection on the inputs the body, data and evaluation commands read and write: damaged
images and packs, outputs that exist or are files; each ends in one clear error naming the file
(and row), and nothing already there is lost."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from spin.cli.data import data_app
from spin.data.datasets import SpinImageDataset
from spin.data.h5pack import ImagePack, pack_images
from spin.errors import UserError


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from spin.body import BodyModel
    from spin.data.synthetic import synthesize_dataset

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("faults_data")
    paths = synthesize_dataset(out, BodyModel.default(), n_train=4, n_test=0, image_size=32, seed=5,
                               progress=False)
    return out, paths["train"]


@pytest.fixture
def copy(dataset, tmp_path):
    """A private copy of the dataset folder that a test may damage."""
    out, npz = dataset
    target = tmp_path / "data"
    shutil.copytree(out, target)
    return target, target / npz.name


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_truncated_pack_is_one_clear_error(copy, tmp_path):
    root, npz = copy
    pack = pack_images(npz, root, tmp_path / "p.h5")
    data = pack.read_bytes()
    pack.write_bytes(data[: len(data) // 2])
    message = _error(ImagePack, pack)
    assert str(pack) in message and ("damaged" in message or "not an image pack" in message)
    message = _error(SpinImageDataset, npz, images=pack)
    assert str(pack) in message


def test_damaged_row_fails_its_checksum_naming_pack_and_row(copy, tmp_path):
    root, npz = copy
    pack = pack_images(npz, root, tmp_path / "p.h5")
    with h5py.File(pack, "r") as h5:
        stored = h5["images"][2].tobytes()
        name = h5["names"].asstr()[2]
    raw = bytearray(pack.read_bytes())
    at = raw.find(stored)
    assert at > 0 and raw.find(stored, at + 1) < 0  # the image's bytes are stored once, uncompressed
    raw[at + len(stored) // 2] ^= 0xFF
    pack.write_bytes(bytes(raw))
    reader = ImagePack(pack)
    assert reader.read(next(n for n in reader.index if n != name))  # undamaged rows still read
    message = _error(reader.read, name)
    assert str(pack) in message and "row 2" in message and "checksum" in message
    dataset = SpinImageDataset(npz, images=pack, img_res=32)
    row = [str(n) for n in dataset.annotations.imgname].index(name)
    assert "checksum" in _error(dataset.__getitem__, row)


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_pack_validates_the_images_it_packs(copy, tmp_path, damage):
    root, npz = copy
    names = [str(n) for n in np.load(npz)["imgname"]]
    victim = root / names[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"hello, not a png")
    out = tmp_path / "p.h5"
    message = _error(pack_images, npz, root, out)
    assert str(victim) in message and "row 1" in message
    assert not out.exists() and not list(tmp_path.glob("p.h5*"))  # nothing half-written left


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_a_damaged_image_in_a_folder_is_one_sentence_naming_file_and_row(copy, damage):
    root, npz = copy
    names = [str(n) for n in np.load(npz)["imgname"]]
    victim = root / names[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"hello, not a png")
    dataset = SpinImageDataset(npz, images=root, img_res=32)
    assert dataset[1]["img"].shape == (3, 32, 32)  # the other rows still load
    message = _error(dataset.__getitem__, 2)
    assert str(victim) in message and "row 2" in message and "damaged" in message


def test_pack_validates_the_annotations(copy, tmp_path):
    root, npz = copy
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["center"][0, 0] = np.nan
    np.savez(npz, **arrays)
    message = _error(pack_images, npz, root, tmp_path / "p.h5")
    assert npz.name in message and "center" in message and not (tmp_path / "p.h5").exists()


def test_pack_does_not_overwrite_without_force(copy, tmp_path):
    root, npz = copy
    out = tmp_path / "p.h5"
    out.write_bytes(b"an older pack")
    args = ["pack", "--data", str(npz), "--images", str(root), "--out", str(out)]
    result = CliRunner().invoke(data_app, args)
    assert isinstance(result.exception, UserError) and "already exists" in str(result.exception)
    assert out.read_bytes() == b"an older pack"
    result = CliRunner().invoke(data_app, [*args, "--force"])
    assert result.exit_code == 0, result.output
    assert len(ImagePack(out)) == len(set(np.load(npz)["imgname"]))


def test_data_synth_onto_a_file_or_an_existing_dataset(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    result = CliRunner().invoke(data_app, ["synth", "--out", str(target), "--train", "1", "--test", "0"])
    assert isinstance(result.exception, UserError) and "is a file, not a folder" in str(result.exception)
    assert target.read_text() == "x"
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "synthetic_train.npz").write_bytes(b"precious")
    result = CliRunner().invoke(data_app, ["synth", "--out", str(folder), "--train", "1", "--test", "0"])
    assert isinstance(result.exception, UserError) and "already exists" in str(result.exception)
    assert (folder / "synthetic_train.npz").read_bytes() == b"precious"
