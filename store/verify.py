"""Check a fits store end to end: every record decodes, nothing is NaN, metadata agrees with data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb
import numpy as np
from lmdb import verify as lmdb_verify

from store import schema
from store.damage import check_directory, structure_problems
from store.environment import (
    EXACT_ROW_SIZE,
    META_COUNTERS,
    META_DATASETS,
    META_VERSION,
    ROUND_PREFIX,
    Environment,
)
from store.errors import DamagedStoreError
from store.fits_store import FitsStore

_CHUNK = 65536
MAX_LISTED = 20


@dataclass
class VerifyReport:
    """What `verify_store` found. `ok` only when nothing at all is wrong."""

    path: str
    records: int = 0
    datasets: int = 0
    bad_records: int = 0
    problems: list[str] = field(default_factory=list)
    structure_checked: bool = False
    damaged: bool = False  # the file itself is damaged: salvage it (`store.salvage`), --repair cannot
    repaired: int = 0
    _bad_keys: list[bytes] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(message)
        elif len(self.problems) == MAX_LISTED:
            self.problems.append("… more problems not listed")


def verify_store(path: str | os.PathLike, structure: bool = False, repair: bool = False) -> VerifyReport:
    """Verify the store at `path` in one consistent read view.

    Checks every record (length, checksum, schema version, source code, finite numbers, a known
    dataset, index below the dataset's size), the exact-row table, and the metadata (schema
    version, dataset table, per-dataset counts equal to the records present, counters, rounds).
    Before liblmdb maps anything, the file is checked against its meta pages and the committed
    B-trees are walked page by page in Python (`store.pages`); a damaged file is reported
    (`damaged`) and never opened. `structure=True` also runs py-lmdb's full offline verifier
    (`lmdb.verify`; only meaningful while no process writes).
    `repair=True` deletes bad records (they are refitted later) and rewrites the
    per-dataset counts, then verifies again.
    """
    path = Path(path).expanduser().resolve()
    report = VerifyReport(path=str(path))
    if not _structure_sound(path, report):
        return report  # never handed to liblmdb: a damaged file could abort the process
    if structure:
        report.structure_checked = True
        for message in lmdb_verify.verify(str(path)):
            report.problem(f"LMDB structure: {message}")
    try:
        store = FitsStore(path, readonly=True)
        store._read(lambda txn, handle: _check(txn, handle, report))
        store.close()
    except DamagedStoreError as error:
        report.damaged = True
        report.problem(str(error))
        return report
    if repair and report._bad_keys:
        writer = FitsStore(path)
        report.repaired = writer._write(lambda txn, handle: _drop(txn, handle, report._bad_keys))
        writer.close()
        again = verify_store(path, structure=structure)
        again.repaired = report.repaired
        return again
    return report


def _structure_sound(path: Path, report: VerifyReport) -> bool:
    """Check the directory and walk the committed B-trees' pages in Python; False when damaged."""
    try:
        check_directory(path, writable=False)
    except DamagedStoreError as error:
        report.damaged = True
        report.problem(str(error))
        return False
    for problem in structure_problems(path):
        report.damaged = True
        report.problem(f"LMDB structure: {problem}")
    return not report.damaged


def _check(txn: lmdb.Transaction, handle: Environment, report: VerifyReport) -> None:
    meta = handle.meta_db
    raw_version = txn.get(META_VERSION, db=meta)
    if raw_version is None or int(raw_version) != schema.SCHEMA_VERSION:
        report.problem(f"metadata: schema version {raw_version!r}, expected {schema.SCHEMA_VERSION}")
    datasets = _load_json(txn.get(META_DATASETS, db=meta), {}, "dataset table", report)
    counters = _load_json(txn.get(META_COUNTERS, db=meta), {}, "counters", report)
    report.datasets = len(datasets)
    by_id = _check_dataset_table(datasets, report)
    sizes = np.zeros(schema.MAX_DATASETS, dtype=np.int64)
    for dataset_id, (_, entry) in by_id.items():
        sizes[dataset_id] = int(entry.get("size", 0))
    counts = np.zeros(schema.MAX_DATASETS, dtype=np.int64)

    cursor = txn.cursor(db=handle.fits_db)
    chunk: list[tuple[bytes, bytes]] = []
    for item in cursor:
        chunk.append(item)
        if len(chunk) >= _CHUNK:
            _check_records(chunk, by_id, sizes, counts, report)
            chunk = []
    _check_records(chunk, by_id, sizes, counts, report)

    for dataset_id, (name, entry) in by_id.items():
        if int(entry.get("count", -1)) != counts[dataset_id]:
            report.problem(
                f"metadata: dataset {name!r} claims {entry.get('count')} records, holds {counts[dataset_id]}"
            )
    if counters and counters.get("accepted", 0) < report.records:
        report.problem(
            f"metadata: counters say {counters.get('accepted')} accepted writes for {report.records} records"
        )

    for key, value in txn.cursor(db=handle.exact_db):
        if len(key) != schema.KEY_SIZE or int.from_bytes(key[:2], "big") not in by_id:
            report.problem(f"exact rows: key {key.hex()} has no dataset")
        elif len(value) != EXACT_ROW_SIZE or not np.isfinite(np.frombuffer(value, dtype="<f8")).all():
            report.problem(f"exact rows: row {key.hex()} is malformed or not finite")

    cursor = txn.cursor(db=meta)
    if cursor.set_range(ROUND_PREFIX):
        for key, value in cursor:
            if not key.startswith(ROUND_PREFIX):
                break
            _load_json(value, {}, f"round entry {key.decode(errors='replace')}", report)


def _load_json(raw: bytes | None, default: Any, what: str, report: VerifyReport) -> Any:
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        report.problem(f"metadata: the {what} is not valid JSON")
        return default


def _check_dataset_table(datasets: Any, report: VerifyReport) -> dict[int, tuple[str, dict[str, Any]]]:
    by_id: dict[int, tuple[str, dict[str, Any]]] = {}
    if not isinstance(datasets, dict):
        report.problem("metadata: the dataset table is not a mapping")
        return by_id
    for name, entry in datasets.items():
        dataset_id = entry.get("id") if isinstance(entry, dict) else None
        if (
            not isinstance(dataset_id, int)
            or not 0 <= dataset_id < schema.MAX_DATASETS
            or dataset_id in by_id
        ):
            report.problem(f"metadata: dataset {name!r} has a missing, out-of-range or repeated id")
            continue
        by_id[dataset_id] = (name, entry)
    return by_id


def _check_records(
    chunk: list[tuple[bytes, bytes]],
    by_id: dict[int, tuple[str, dict[str, Any]]],
    sizes: np.ndarray,
    counts: np.ndarray,
    report: VerifyReport,
) -> None:
    if not chunk:
        return
    report.records += len(chunk)
    keys = [k for k, _ in chunk]
    key_ok = np.fromiter((len(k) == schema.KEY_SIZE for k in keys), dtype=bool, count=len(keys))
    records, ok = schema.decode_values([v for _, v in chunk])
    ok &= ~schema.record_problems(records) & key_ok
    dataset_ids = np.zeros(len(chunk), dtype=np.int64)
    indices = np.zeros(len(chunk), dtype=np.int64)
    good_keys = np.flatnonzero(key_ok)
    if good_keys.size:
        decoded = np.frombuffer(b"".join(keys[i] for i in good_keys), dtype=schema.KEY_DTYPE)
        dataset_ids[good_keys] = decoded["dataset"]
        indices[good_keys] = decoded["index"]
    known = np.isin(dataset_ids, np.fromiter(by_id, dtype=np.int64, count=len(by_id))) & key_ok
    np.add.at(counts, dataset_ids[known], 1)
    for i in np.flatnonzero(known & (indices >= sizes[dataset_ids])):
        name = by_id[int(dataset_ids[i])][0]
        report.problem(
            f"metadata: {schema.format_key(name, indices[i])} lies past dataset size {sizes[dataset_ids[i]]}"
        )
    for i in np.flatnonzero(~ok | ~known):
        report.bad_records += 1
        report._bad_keys.append(keys[i])
        label = (
            schema.format_key(by_id[int(dataset_ids[i])][0], indices[i])
            if known[i]
            else f"key {keys[i].hex()}"
        )
        report.problem(f"record {label}: {_describe(chunk[i][1], known[i])}")


def _describe(value: bytes, known_dataset: bool) -> str:
    if not known_dataset:
        return "key does not belong to any dataset in the metadata"
    if len(value) != schema.RECORD_SIZE:
        return f"{len(value)} bytes, a record has {schema.RECORD_SIZE}"
    record = schema.decode_records(value, 1)
    if not schema.checksum_ok(record)[0]:
        return "checksum mismatch (corrupted bytes)"
    if record["version"][0] != schema.SCHEMA_VERSION:
        return f"record schema version {record['version'][0]}"
    if record["source"][0] >= len(schema.SOURCES):
        return f"unknown source code {record['source'][0]}"
    if np.isfinite(record["loss"][0]) and record["loss"][0] < 0:
        return f"negative loss {record['loss'][0]:g} (a loss is never below 0)"
    return "NaN or Inf in pose, betas, cam_t or loss"


def _drop(txn: lmdb.Transaction, handle: Environment, bad_keys: list[bytes]) -> int:
    """Delete bad records and rewrite every dataset's count from the records that remain."""
    dropped = sum(bool(txn.delete(key, db=handle.fits_db)) for key in bad_keys)
    datasets = json.loads(txn.get(META_DATASETS, db=handle.meta_db) or b"{}")
    counts: dict[int, int] = {}
    for key in txn.cursor(db=handle.fits_db).iternext(keys=True, values=False):
        if len(key) == schema.KEY_SIZE:
            dataset_id = int.from_bytes(key[:2], "big")
            counts[dataset_id] = counts.get(dataset_id, 0) + 1
    for entry in datasets.values():
        entry["count"] = counts.get(entry["id"], 0)
    txn.put(META_DATASETS, json.dumps(datasets).encode(), db=handle.meta_db)
    return dropped
