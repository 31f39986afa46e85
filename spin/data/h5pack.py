"""HDF5 image packs: one file with a dataset's encoded images, for fast I/O on cluster filesystems.

Layout (format `spin-image-pack`, version 2; version 1 packs, without checksums, stay readable):

* `names` (M,) variable-length UTF-8 strings: the `imgname` of each stored image (unique);
* `images` (M,) variable-length uint8: each image file's bytes exactly as on disk (PNG/JPEG), so
  decoding a packed image gives the same pixels as decoding the file;
* `crc32` (M,) uint32: the CRC-32 of each image's bytes, checked on every read, so a damaged pack
  is a clear error naming the pack and the row instead of a wrong image or a decoder crash;
* `annotations/<key>`: the arrays of the SPIN `.npz` the pack was made from (for reference; the
  dataset still reads its annotations from the `.npz`).

Rows of the `.npz` that share an image (several people in one picture) share one stored image.
Readers look images up by name, so a pack serves any annotation file over the same images.
"""

from __future__ import annotations

import io
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from spin.errors import UserError

PACK_FORMAT = "spin-image-pack"
PACK_VERSION = 2
READABLE_VERSIONS = (1, 2)


def _checked_image_bytes(path: Path, row: int, data_npz: Path) -> bytes:
    """The bytes of an image file after checking that they decode completely (any truncation or
    corruption is a UserError naming the file and its row)."""
    raw = path.read_bytes()
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.load()  # decodes every pixel: truncated files fail here, not in training
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad files
        raise UserError(f"Image {path} (row {row} of {data_npz.name}) is damaged or not an image "
                        f"({type(exc).__name__}); replace the file, then pack again.") from None
    return raw


def pack_images(data_npz: str | Path, image_root: str | Path, out_path: str | Path,
                progress: Callable[[int, int], None] | None = None, force: bool = False) -> Path:
    """Write the images of a SPIN `.npz` (paths `imgname` relative to image_root) into one HDF5 pack.

    The annotations are validated as the datasets read them, and every image is decoded before it
    is packed; each image's CRC-32 is stored. `progress(done, total)` is called after each image.
    Written to a temporary file and renamed, so an interrupted run never leaves a half-written pack
    under the final name; an existing `out_path` is kept unless `force`. Returns out_path.
    """
    from spin.atomic_io import check_new_output
    from spin.data.spin_format import load_spin_npz

    data_npz, image_root = Path(data_npz), Path(image_root)
    out_path = check_new_output(out_path, force, "Image pack")
    if not data_npz.is_file():
        raise UserError(f"Dataset file {data_npz} does not exist; pass a SPIN-format .npz to --data.")
    if not image_root.is_dir():
        raise UserError(f"Image folder {image_root} does not exist; pass the folder the imgname paths of "
                        f"{data_npz.name} are relative to as --images.")
    with np.load(data_npz, allow_pickle=True) as raw:
        arrays = {key: np.asarray(raw[key]) for key in raw.files}
    if "imgname" not in arrays:
        raise UserError(f"{data_npz} has no 'imgname' array; it is not a SPIN-format dataset file.")
    load_spin_npz(data_npz)  # the annotations as training reads them: shapes, NaN/Inf, scales
    names = list(dict.fromkeys(str(name) for name in arrays["imgname"]))
    first_row = {}
    for row, name in enumerate(str(n) for n in arrays["imgname"]):
        first_row.setdefault(name, row)
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
            crc = np.zeros(len(names), dtype=np.uint32)
            for i, name in enumerate(names):
                raw = _checked_image_bytes(image_root / name, first_row[name], data_npz)
                images[i] = np.frombuffer(raw, dtype=np.uint8)
                crc[i] = zlib.crc32(raw)
                if progress is not None:
                    progress(i + 1, len(names))
            h5.create_dataset("crc32", data=crc)
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


def _damaged(path: Path, exc: BaseException) -> UserError:
    return UserError(f"Image pack {path} is damaged or truncated ({type(exc).__name__}); re-create it "
                     "with `spin data pack`.")


def is_image_pack(path: str | Path) -> bool:
    """True when `path` is an HDF5 file written by `pack_images` (a damaged one: a UserError)."""
    path = Path(path)
    if not path.is_file() or not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("format") == PACK_FORMAT
    except OSError as exc:
        raise _damaged(path, exc) from None


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
        try:
            with h5py.File(self.path, "r") as h5:
                version = int(h5.attrs.get("version", 0))
                if version not in READABLE_VERSIONS:
                    raise UserError(f"{self.path} is image-pack version {version}, this code reads versions "
                                    f"{READABLE_VERSIONS}; re-run `spin data pack`.")
                names = h5["names"].asstr()[()]
                count = h5["images"].shape[0]
                self.crc32 = np.asarray(h5["crc32"][()], dtype=np.uint32) if "crc32" in h5 else None
        except (OSError, KeyError, ValueError) as exc:
            raise _damaged(self.path, exc) from None
        if count != len(names) or (self.crc32 is not None and len(self.crc32) != len(names)):
            raise UserError(f"Image pack {self.path} is inconsistent ({len(names)} names, {count} images); "
                            "re-create it with `spin data pack`.")
        self.index = {str(name): i for i, name in enumerate(names)}
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.index

    def __len__(self) -> int:
        return len(self.index)

    def read(self, name: str) -> bytes:
        """The stored file bytes of image `name` (KeyError if absent), checked against the stored
        CRC-32; damage is a UserError naming the pack, the row and the image."""
        row = self.index[name]
        try:
            if self._file is None or self._pid != os.getpid():
                self._file = h5py.File(self.path, "r")
                self._pid = os.getpid()
            raw = self._file["images"][row].tobytes()
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"Image pack {self.path}: row {row} ('{name}') cannot be read "
                            f"({type(exc).__name__}); the pack is damaged — re-create it with "
                            "`spin data pack`.") from None
        if self.crc32 is not None and zlib.crc32(raw) != int(self.crc32[row]):
            raise UserError(f"Image pack {self.path}: row {row} ('{name}') fails its checksum; the pack is "
                            "damaged — re-create it with `spin data pack`.")
        return raw

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
