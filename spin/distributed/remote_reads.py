"""Fit reads for ranks on nodes that do not hold the LMDB store: through the store writer actor.

LMDB is node-local and is never opened over a network filesystem. A rank on the store's node
reads the directory directly (`StoreFitReader`, inside the data-loader workers, as a single
process does); a rank elsewhere reads through the writer actor in one call per batch
(`RemoteFitReader`), prefetched on a background thread of the rank's own process while the
previous step runs (`prefetch_fits`); Ray handles do not survive the fork into data-loader
workers, so the remote read cannot run inside `collate_fn`.

Staleness: the writer actor serialises commits, and each `get` runs in its own LMDB read
transaction on the actor, which sees every `put_if_better` whose commit finished before the read
began. A remote rank therefore sees every fit acknowledged before its read, the same as a local
reader; the only lag is the prefetch depth (a batch's fits are read up to `depth` steps before
the step that uses them), exactly as for the local reader in the data-loader workers.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spin.training.supervision import FIT_FIELDS, StoreFitReader, build_supervision, empty_fits

DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_PREFETCH = 2


class RemoteFitReader:
    """`StoreFitReader`'s interface (`read(keys)`), served by the store writer actor.

    remote_store: a `fitting_workers.store_actor.RemoteFitsStore`. A read that takes longer than
    `timeout_s` (actor restarting, node gone) returns the batch as fit-absent, so training goes on
    with ground-truth supervision only, and is counted in `timeouts`.
    """

    in_loader_workers = False  # reads need this process's Ray connection (see module docstring)

    def __init__(self, remote_store: Any, timeout_s: float = DEFAULT_READ_TIMEOUT_S):
        self.remote_store = remote_store
        self.timeout_s = timeout_s
        self.reads = 0
        self.timeouts = 0

    def read(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        import ray

        ref = self.remote_store.handle.get.remote(list(keys))
        try:
            fits = ray.get(ref, timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.cancel(ref)
            self.timeouts += 1
            return empty_fits(len(keys))
        self.reads += 1
        return {name: fits[name] for name in FIT_FIELDS}


def connect_store_writer(path: str | os.PathLike, timeout_s: float = 120.0) -> Any:
    """The `RemoteFitsStore` of the writer actor that rank 0 started for `path` (ranks other than 0
    connect; they never start a writer, which would land on their own node). Waits up to `timeout_s`."""
    import time

    import ray

    from fitting_workers.store_actor import RemoteFitsStore, writer_name
    from spin.errors import UserError

    path = os.path.abspath(os.fspath(path))
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return RemoteFitsStore(ray.get_actor(writer_name(path)), path)
        except ValueError:  # not created yet
            if time.monotonic() > deadline:
                raise UserError(f"No fits store writer for {path} appeared within {timeout_s:g} s; rank 0 "
                                "starts it: check rank 0's log.") from None
            time.sleep(0.5)


def store_node_id(remote_store: Any, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> str:
    """Ray node id of the store writer actor (the node whose local disk holds the LMDB file)."""
    import ray

    return ray.get(remote_store.handle.node_id.remote(), timeout=timeout_s)


def fit_reader_for(store_path: str | os.PathLike, remote_store: Any | None = None,
                   node_id: str | None = None) -> StoreFitReader | RemoteFitReader:
    """The reader a rank should use for the store at `store_path`.

    With a store writer actor (`remote_store`): local LMDB reads when this process runs on the
    writer's node (`node_id`, default this process's Ray node), remote reads otherwise, even when
    the path is visible here (a network mount or another node's copy must not be opened). Without
    one (no Ray: a single machine) the directory is read locally.
    """
    if remote_store is None:
        return StoreFitReader(store_path)
    if node_id is None:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    if node_id == store_node_id(remote_store):
        return StoreFitReader(Path(store_path))
    return RemoteFitReader(remote_store)


def reads_in_collate(reader: Any) -> bool:
    """Whether `reader` can run inside the loader's `collate_fn` (in data-loader workers)."""
    return getattr(reader, "in_loader_workers", True)


def prefetch_fits(batches: Iterator[dict[str, Any]], reader: Any, threshold: float,
                  depth: int = DEFAULT_PREFETCH, timeout_s: float = 600.0) -> Iterator[dict[str, Any]]:
    """`batches` (collated without fits) with `supervision` added, read `depth` batches ahead on a
    background thread. Errors of the loader or the reader are re-raised in the consumer; a batch
    that takes longer than `timeout_s` to arrive raises TimeoutError.
    """
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for batch in batches:
                fits = reader.read(batch["key"])
                batch["supervision"] = build_supervision(fits, batch["flip"], batch["rot"], batch["pose"],
                                                         batch["betas"], batch["has_smpl"], threshold)
                if not put(batch):
                    return
            put(done)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put(error)

    thread = threading.Thread(target=work, name="fit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = out.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no training batch arrived within {timeout_s:g} s") from None
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5.0)
