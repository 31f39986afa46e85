"""The on-disk layout of one fit: a fixed-size little-endian record and a 6-byte key.

A record is 376 bytes (94 little-endian 32-bit words) so that ten of them, with LMDB's per-node
overhead, fill a 4 KiB page: a densely written store costs about 410 bytes per fit on disk.
The last word is a position-weighted checksum of the other 93, so garbage written under a key, a
torn value or a flipped bit is detected without decoding field by field.

Keys are `dataset id (big-endian uint16) + sample index (big-endian uint32)`: 6 bytes that sort
by dataset, then by index, so one dataset is one contiguous key range and appending a dataset in
index order fills pages completely. The id ↔ name table lives in the store's metadata.

Everything here is vectorised over a batch: no per-field Python loops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from store.errors import StoreError

SCHEMA_VERSION = 1

SOURCES: tuple[str, ...] = ("static", "smplify", "gt")
"""Where a fit came from; stored as its position in this tuple (one byte)."""

UNSCORED_LOSS = 1e9
"""Loss given to imported fits whose reprojection loss is unknown (SPIN's static fits carry none).

Finite, so it may enter the store, and far above any supervision threshold, so such a fit never
supervises until it is rescored and any scored candidate replaces it. Rescore by writing the same
fit with its real loss through `put_if_better`: a lower loss is always accepted.
"""

NUM_POSE = 72
NUM_BETAS = 10
NUM_CAM = 3

RECORD_DTYPE = np.dtype(
    [
        ("pose", "<f4", (NUM_POSE,)),
        ("betas", "<f4", (NUM_BETAS,)),
        ("cam_t", "<f4", (NUM_CAM,)),
        ("loss", "<f8"),
        ("time", "<f8"),  # unix seconds when the record was written
        ("step", "<i8"),
        ("round", "<u4"),
        ("source", "u1"),
        ("version", "u1"),  # SCHEMA_VERSION, repeated per record so a stray value is recognisable
        ("reserved", "<u2"),
        ("check", "<u4"),
    ]
)
RECORD_SIZE = RECORD_DTYPE.itemsize
_WORDS = RECORD_SIZE // 4
assert RECORD_SIZE == 376 and RECORD_SIZE % 4 == 0

# Odd weights make every single-word change alter the sum modulo 2**32; the seed makes an
# all-zero value (a common shape of garbage) fail the check.
_CHECK_WEIGHTS = (2 * np.arange(_WORDS - 1, dtype=np.uint64) + 1).astype(np.uint64)
_CHECK_SEED = np.uint64(0x5EED_F175)

KEY_DTYPE = np.dtype([("dataset", ">u2"), ("index", ">u4")])
KEY_SIZE = KEY_DTYPE.itemsize
MAX_DATASETS = 1 << 16
MAX_INDEX = (1 << 32) - 1


def _checksums(words: np.ndarray) -> np.ndarray:
    """(B, 94) uint32 words → (B,) uint32 checksum of the first 93 words."""
    total = (words[:, : _WORDS - 1].astype(np.uint64) * _CHECK_WEIGHTS).sum(axis=1, dtype=np.uint64)
    return ((total + _CHECK_SEED) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def encode_records(
    pose: np.ndarray,
    betas: np.ndarray,
    cam_t: np.ndarray,
    loss: np.ndarray,
    time: np.ndarray,
    step: np.ndarray,
    round: np.ndarray,
    source: np.ndarray,
) -> bytes:
    """Pack B fits into B·376 bytes.

    pose (B, 72), betas (B, 10), cam_t (B, 3) → float32; loss (B,) and time (B,) → float64;
    step (B,) int64; round (B,) uint32; source (B,) codes into SOURCES.
    """
    records = np.zeros(len(loss), dtype=RECORD_DTYPE)
    records["pose"] = pose
    records["betas"] = betas
    records["cam_t"] = cam_t
    records["loss"] = loss
    records["time"] = time
    records["step"] = step
    records["round"] = round
    records["source"] = source
    records["version"] = SCHEMA_VERSION
    words = records.view(np.uint32).reshape(len(records), _WORDS)
    records["check"] = _checksums(words)
    return records.tobytes()


def decode_records(buffer: bytes | bytearray | memoryview, count: int) -> np.ndarray:
    """B·376 bytes → (B,) structured array of RECORD_DTYPE (a read-only view, no copy)."""
    if len(buffer) != count * RECORD_SIZE:
        raise ValueError(f"expected {count * RECORD_SIZE} bytes for {count} records, got {len(buffer)}")
    return np.frombuffer(buffer, dtype=RECORD_DTYPE, count=count)


def checksum_ok(records: np.ndarray) -> np.ndarray:
    """(B,) records → (B,) bool: the stored checksum matches the content."""
    words = np.ascontiguousarray(records).view(np.uint32).reshape(len(records), _WORDS)
    return _checksums(words) == records["check"]


def record_problems(records: np.ndarray) -> np.ndarray:
    """(B,) records → (B,) bool: checksum, version, source code, a non-finite number or a negative loss."""
    bad = ~checksum_ok(records)
    bad |= records["version"] != SCHEMA_VERSION
    bad |= records["source"] >= len(SOURCES)
    bad |= ~np.isfinite(records["pose"]).all(axis=1)
    bad |= ~np.isfinite(records["betas"]).all(axis=1)
    bad |= ~np.isfinite(records["cam_t"]).all(axis=1)
    bad |= ~np.isfinite(records["loss"])
    with np.errstate(invalid="ignore"):
        bad |= records["loss"] < 0
    return bad


def source_codes(source: str | Sequence[str] | np.ndarray, count: int) -> np.ndarray:
    """'smplify' or (B,) names → (B,) uint8 codes into SOURCES; unknown names are a StoreError."""
    names = np.broadcast_to(np.asarray(source, dtype=object), (count,))
    lookup = {name: code for code, name in enumerate(SOURCES)}
    try:
        return np.fromiter((lookup[name] for name in names), dtype=np.uint8, count=count)
    except KeyError as error:
        raise StoreError(f"unknown fit source {error.args[0]!r}; use one of {', '.join(SOURCES)}") from None


_SOURCE_NAMES = np.array([*SOURCES, ""], dtype=f"<U{max(map(len, SOURCES))}")


def source_names(codes: np.ndarray) -> np.ndarray:
    """(B,) codes → (B,) str names; codes past SOURCES (absent records) become ''."""
    return _SOURCE_NAMES.take(codes, mode="clip")


def parse_key(key: str) -> tuple[str, int]:
    """'<dataset>/<index>' → (dataset, index); the dataset name may itself contain '/'."""
    dataset, sep, index = str(key).rpartition("/")
    if not sep or not dataset or not (index.isascii() and index.isdecimal()) or int(index) > MAX_INDEX:
        raise StoreError(
            f"fit key {key!r} is not '<dataset>/<index>' with an index in 0..{MAX_INDEX}; "
            "write keys like 'h36m/123'"
        )
    return dataset, int(index)


def parse_keys(keys: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """B keys → (B dataset names, (B,) int64 indices); a StoreError names the first bad key."""
    try:
        parts = [key.rpartition("/") for key in keys]
    except AttributeError:  # not strings
        parts = None
    if parts is not None:
        names = [dataset for dataset, _, _ in parts]
        digits = [index for _, _, index in parts]
        joined = "".join(digits)
        # one check over all indices: ASCII decimal digits only (no sign, space, '_' or '²')
        longest = max(map(len, digits), default=0)
        if all(names) and all(digits) and longest <= 10 and joined.isascii() and joined.isdecimal():
            indices = np.array([int(index) for index in digits], dtype=np.int64)
            if not len(indices) or indices.max() <= MAX_INDEX:
                return names, indices
    for key in keys:
        parse_key(key)  # raises for the first bad key
    raise AssertionError("unreachable: parse_key accepted every key parse_keys refused")


def format_key(dataset: str, index: int) -> str:
    return f"{dataset}/{int(index)}"


def key_ints(dataset_ids: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(B,) ids, (B,) indices → (B,) uint64 that order exactly like the encoded keys."""
    return (dataset_ids.astype(np.uint64) << np.uint64(32)) | indices.astype(np.uint64)


def encode_key_ints(ints: np.ndarray) -> list[bytes]:
    """(B,) uint64 from key_ints → B 6-byte LMDB keys."""
    keys = np.empty(len(ints), dtype=KEY_DTYPE)
    keys["dataset"] = ints >> np.uint64(32)
    keys["index"] = ints & np.uint64(0xFFFFFFFF)
    raw = keys.tobytes()
    return [raw[i : i + KEY_SIZE] for i in range(0, len(raw), KEY_SIZE)]


def decode_key_ints(joined: bytes, count: int) -> np.ndarray:
    """B keys joined into B·6 bytes → (B,) uint64 key ints."""
    keys = np.frombuffer(joined, dtype=KEY_DTYPE, count=count)
    return key_ints(keys["dataset"], keys["index"])


def dataset_prefix(dataset_id: int) -> bytes:
    return int(dataset_id).to_bytes(2, "big")


def decode_values(values: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Stored values → (records (n,), ok (n,) bool: right length and checksum)."""
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    right_length = lengths == RECORD_SIZE
    if right_length.all():
        records = decode_records(b"".join(values), len(values))
    else:
        records = np.zeros(len(values), dtype=RECORD_DTYPE)
        good = np.flatnonzero(right_length)
        if good.size:
            records[good] = decode_records(b"".join(values[i] for i in good), good.size)
    ok = right_length & checksum_ok(records) & (records["version"] == SCHEMA_VERSION)
    return records, ok


_ABSENT_RECORD = np.zeros(1, dtype=RECORD_DTYPE)
_ABSENT_RECORD["source"] = len(SOURCES)  # reads back as source ''
ABSENT_BYTES = _ABSENT_RECORD.tobytes()


def record_fields(records: np.ndarray) -> dict[str, np.ndarray]:
    """(B,) structured records → dict of plain arrays (copies, so they outlive the read buffer)."""
    return {
        "pose": records["pose"].astype(np.float32),
        "betas": records["betas"].astype(np.float32),
        "cam_t": records["cam_t"].astype(np.float32),
        "loss": records["loss"].astype(np.float64),
        "round": records["round"].astype(np.int64),
        "step": records["step"].astype(np.int64),
        "time": records["time"].astype(np.float64),
        "source": source_names(records["source"]),
    }
