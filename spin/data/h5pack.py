"""HDF5 image packs: one file with a dataset's encoded images, for fast I/O on cluster filesystems.

Layout (format `spin-image-pack`, version 1):

* `names` (M,) variable-length UTF-8 strings: the `imgname` of each stored image (unique);
* `images` (M,) variable-length uint8: each image file's bytes exactly as on disk (PNG/JPEG), so
  decoding a packed image gives the same pixels as decoding the file;
* `annotations/<key>`: the arrays of the SPIN `.npz` the pack was made from (for reference; the
  dataset still reads its annotations from the `.npz`).

Rows of the `.npz` that share an image (several people in one picture) share one stored image.
Readers look images up by name, so a pack serves any annotation file over the same images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from spin.errors import UserError

PACK_FORMAT = "spin-image-pack"
PACK_VERSION = 1


def pack_images(data_npz: str | Path, image_root: str | Path, out_path: str | Path,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the images of a SPIN `.npz` (paths `imgname` relative to image_root) into one HDF5 pack.

    `progress(done, total)` is called after each image. Written to a temporary file and renamed, so
    an interrupted run never leaves a half-written pack under the final name. Returns out_path.
    """
    data_npz, image_root, out_path = Path(data_npz), Path(image_root), Path(out_path)
    if not data_npz.is_file():
        raise UserError(f"Dataset file {data_npz} does not exist; pass a SPIN-format .npz to --data.")
    if not image_root.is_dir():
        raise UserError(f"Image folder {image_root} does not exist; pass the folder the imgname paths of "
                        f"{data_npz.name} are relative to as --images.")
    with np.load(data_npz, allow_pickle=True) as raw:
        arrays = {key: np.asarray(raw[key]) for key in raw.files}
    if "imgname" not in arrays:
        raise UserError(f"{data_npz} has no 'imgname' array; it is not a SPIN-format dataset file.")
    names = list(dict.fromkeys(str(name) for name in arrays["imgname"]))
    missing = [name for name in names if not (image_root / name).is_file()]
    if missing:
        raise UserError(f"{len(missing)} of {len(names)} images of {data_npz} are missing under {image_root} "
                        f"(first: {missing[0]}); pass the right folder as --images.")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format"] = PACK_FORMAT
            h5.attrs["version"] = PACK_VERSION
            h5.attrs["source"] = str(data_npz.name)
            h5.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype("utf-8"))
            images = h5.create_dataset("images", shape=(len(names),), dtype=h5py.vlen_dtype(np.uint8))
            for i, name in enumerate(names):
                images[i] = np.frombuffer((image_root / name).read_bytes(), dtype=np.uint8)
                if progress is not None:
                    progress(i + 1, len(names))
            group = h5.create_group("annotations")
            for key, value in arrays.items():
                if value.dtype.kind in "UOS":
                    group.create_dataset(key, data=value.astype(str).astype(object),
                                         dtype=h5py.string_dtype("utf-8"))
                else:
                    group.create_dataset(key, data=value)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def is_image_pack(path: str | Path) -> bool:
    """True when `path` is an HDF5 file written by `pack_images`."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as h5:
        return h5.attrs.get("format") == PACK_FORMAT


class ImagePack:
    """Read-only access to a pack's encoded images by name.

    The HDF5 file is opened lazily on first read and reopened in a process that did not open it
    (h5py handles must not cross a fork), so one instance can be handed to data-loader workers.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not is_image_pack(self.path):
            raise UserError(f"{self.path} is not an image pack written by `spin data pack`; pass a pack "
                            "or an image folder.")
        with h5py.File(self.path, "r") as h5:
            version = int(h5.attrs.get("version", 0))
            if version != PACK_VERSION:
                raise UserError(f"{self.path} is image-pack version {version}, this code reads version "
                                f"{PACK_VERSION}; re-run `spin data pack`.")
            names = h5["names"].asstr()[()]
        self.index = {str(name): i for i, name in enumerate(names)}
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __len__(self) -> int:
        return len(self.index)

    def read(self, name: str) -> bytes:
        """The stored file bytes of image `name` (KeyError if absent)."""
        row = self.index[name]
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["images"][row].tobytes()

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state
