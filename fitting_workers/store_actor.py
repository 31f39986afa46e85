"""The store's single writer as a Ray actor, and `RemoteFitsStore`, its client with FitsStore's API.

LMDB lives on a node-local disk and has one writer per environment. When Ray runs, that writer
is `StoreWriterActor`, pinned to the node holding the store; fitting actors anywhere in the
cluster send it batches, and readers on other nodes read through it in batches. Readers on the
store's own node may open the directory directly with `FitsStore(path, readonly=True)`.

The actor commits in groups: `put_if_better` calls that arrive while a transaction is being
committed are merged into the next one. Per-batch atomicity and best-so-far are unchanged (a key
offered by several merged batches keeps its lowest candidate, the earlier one on a tie, exactly
as applying the batches in arrival order would leave it); the merge only saves a disk sync per
batch when many small batches arrive at once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from store import FitsStore
from store.candidates import Candidates, PutResult, concat_candidates, validate_candidates
from store.errors import StoreError

MAX_CONCURRENCY = 16


@dataclass
class _Offer:
    """One caller's put_if_better batch, validated, waiting for the group commit that takes it."""

    candidates: Candidates
    accepted: PutResult | None = None
    error: BaseException | None = None
    done: bool = False


class StoreWriter:
    """Owns the one writable FitsStore of a node-local directory; see the module docstring."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._error: str | None = None
        self._store: FitsStore | None = None
        try:
            self._store = FitsStore(path)
        except StoreError as error:  # reported by ready(), so the caller gets the sentence, not a trace
            self._error = str(error)
        self._condition = threading.Condition()
        self._pending: list[_Offer] = []
        self._committing = False

    def ready(self) -> tuple[str, str | None]:
        """(the store path, the one-sentence error that kept it from opening, or None)."""
        return self._path, self._error

    @property
    def _opened(self) -> FitsStore:
        """The open store; a writer that could not open answers every call with its error."""
        if self._store is None:
            raise StoreError(self._error or f"the writer of fits store {self._path} is not open")
        return self._store

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def put_if_better(self, keys, pose, betas, cam_t, loss, round=0, step=0, source="smplify", time=None):
        # a bad argument or key fails this caller only, not the group it would join
        offer = _Offer(validate_candidates(keys, pose, betas, cam_t, loss, round, step, source, time))
        with self._condition:
            self._pending.append(offer)
            while not offer.done and self._committing:
                self._condition.wait()
            # Either a leader committed this offer while we waited, or we lead the next group:
            # everything pending, this offer included, goes into one transaction.
            leader = not offer.done
            if leader:
                self._committing = True
                group, self._pending = self._pending, []
        if leader:
            try:
                self._commit(group)
            finally:
                with self._condition:
                    self._committing = False
                    self._condition.notify_all()
        if offer.error is not None:
            raise offer.error
        return offer.accepted

    def _commit(self, group: list[_Offer]) -> None:
        """One transaction for every offer in the group; each gets its own slice of the result."""
        try:
            result = self._opened.put_candidates(concat_candidates([offer.candidates for offer in group]))
            start = 0
            for offer in group:
                part = slice(start, start + len(offer.candidates))
                offer.accepted = PutResult(result.accepted[part], result.previous_loss[part])
                start += len(offer.candidates)
        except BaseException as error:
            for offer in group:
                offer.error = error
        for offer in group:
            offer.done = True

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return self._opened.get(keys)

    def len(self) -> int:
        return len(self._opened)

    def stats(self) -> dict[str, Any]:
        return self._opened.stats()

    def datasets(self) -> dict[str, dict[str, Any]]:
        return self._opened.datasets()

    def counters(self) -> dict[str, Any]:
        return self._opened.counters()

    def rounds(self) -> list[dict[str, Any]]:
        return self._opened.rounds()

    def record_round(self, round: int, summary: dict[str, Any], time: float | None = None) -> None:
        self._opened.record_round(round, summary, time=time)

    def declare_dataset(self, name: str, size: int | None = None, dtype: str | None = None) -> None:
        self._opened.declare_dataset(name, size=size, dtype=dtype)

    def resize_dataset(self, name: str, size: int) -> int:
        return self._opened.resize_dataset(name, size)

    def snapshot(self, dest: str, repack: bool = False) -> str:
        return str(self._opened.snapshot(dest, repack=repack))

    def read_chunk(self, name: str, start: int, chunk_size: int) -> dict[str, np.ndarray] | None:
        """The first chunk of dataset `name` from index `start` on, or None past its end."""
        for chunk in self._opened.iter_dataset(name, chunk_size=chunk_size, start=start):
            return chunk
        return None


StoreWriterActor = ray.remote(
    num_cpus=0, max_concurrency=MAX_CONCURRENCY, max_restarts=3, max_task_retries=2
)(StoreWriter)
"""The Ray actor class. Retrying a task is safe: put_if_better applied twice equals applied once."""


DEFAULT_TIMEOUT_S = 600.0
"""Longest wait for one call to the writer (a large batch with fsync takes seconds, not minutes)."""


def _unwrap(ref: ray.ObjectRef, timeout: float | None = DEFAULT_TIMEOUT_S, path: str | None = None) -> Any:
    """ray.get bounded by `timeout` seconds that re-raises a StoreError from the actor as itself
    (one sentence, no remote trace); a writer that does not answer in time is a StoreError too."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        raise StoreError(
            f"the writer actor of fits store {path or '(unknown path)'} did not answer within {timeout:g} s; "
            "check that its node is alive (`ray status`) and that the store's disk is not stalled"
        ) from None
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, StoreError):
            raise error.cause from None
        raise


class RemoteFitsStore:
    """FitsStore's API, served by a `StoreWriterActor`; blocking calls, plus `put_if_better_async`.

    Picklable (it holds an actor handle), so fitting actors and tasks on any node can use it.
    """

    def __init__(
        self,
        handle: ray.actor.ActorHandle,
        path: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.handle = handle
        self.path = path
        self.timeout = timeout  # seconds any one call may wait for the writer

    def _call(self, ref: ray.ObjectRef) -> Any:
        return _unwrap(ref, self.timeout, self.path)

    def __repr__(self) -> str:
        return f"RemoteFitsStore({self.path!r})"

    def put_if_better(
        self, keys, pose, betas, cam_t, loss, round=0, step=0, source="smplify", time=None
    ) -> PutResult:
        """As FitsStore.put_if_better: which candidates were written and the losses they replaced."""
        return self._call(self.put_if_better_async(keys, pose, betas, cam_t, loss, round, step, source, time))

    def put_if_better_async(
        self, keys, pose, betas, cam_t, loss, round=0, step=0, source="smplify", time=None
    ) -> ray.ObjectRef:
        """Send the batch without waiting; ray.get(ref) is the batch's PutResult."""
        return self.handle.put_if_better.remote(
            list(keys),
            np.asarray(pose),
            np.asarray(betas),
            np.asarray(cam_t),
            np.asarray(loss),
            round,
            step,
            source,
            time,
        )

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        return self._call(self.handle.get.remote(list(keys)))

    def __len__(self) -> int:
        return self._call(self.handle.len.remote())

    def stats(self) -> dict[str, Any]:
        return self._call(self.handle.stats.remote())

    def datasets(self) -> dict[str, dict[str, Any]]:
        return self._call(self.handle.datasets.remote())

    def counters(self) -> dict[str, Any]:
        return self._call(self.handle.counters.remote())

    def rounds(self) -> list[dict[str, Any]]:
        return self._call(self.handle.rounds.remote())

    def record_round(self, round: int, summary: dict[str, Any], time: float | None = None) -> None:
        self._call(self.handle.record_round.remote(round, summary, time))

    def declare_dataset(self, name: str, size: int | None = None, dtype: str | None = None) -> None:
        self._call(self.handle.declare_dataset.remote(name, size, dtype))

    def resize_dataset(self, name: str, size: int) -> int:
        return self._call(self.handle.resize_dataset.remote(name, size))

    def snapshot(self, dest: str | os.PathLike, repack: bool = False) -> str:
        """Snapshot into `dest` on the writer's node (the path is interpreted there)."""
        return self._call(self.handle.snapshot.remote(str(dest), repack))

    def iter_dataset(self, name: str, chunk_size: int = 65536) -> Iterator[dict[str, np.ndarray]]:
        start = 0
        while True:
            chunk = self._call(self.handle.read_chunk.remote(name, start, chunk_size))
            if chunk is None:
                return
            yield chunk
            start = int(chunk["index"][-1]) + 1

    def close(self) -> None:
        """Nothing to release on this side; the actor lives as long as the Ray job (see `kill`)."""

    def kill(self) -> None:
        """End the writer actor now (its committed writes are on disk)."""
        ray.kill(self.handle)

    def __enter__(self) -> RemoteFitsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def writer_name(path: str) -> str:
    """The Ray actor name of the writer of `path` (one writer per store directory)."""
    return "fits-store-writer-" + hashlib.sha1(path.encode()).hexdigest()[:16]


def open_store_writer(
    path: str | os.PathLike,
    node_id: str | None = None,
    name: str | None = None,
    timeout: float = 120.0,
) -> RemoteFitsStore:
    """Start the writer actor of the store at `path` on `node_id` (default: this process's node), or
    connect to it when it already runs. Ray must be initialised. Raises StoreError, with the
    writer's own sentence, for a store it cannot open (damaged, wrong schema version, not a fits
    store, a file in the way), and when the actor does not report ready within `timeout` seconds.
    """
    if not ray.is_initialized():
        raise StoreError(
            "Ray is not running; start it (fitting_workers.runtime.ray_session) before open_store_writer"
        )
    path = os.path.abspath(os.fspath(path))
    node_id = node_id or ray.get_runtime_context().get_node_id()
    handle = StoreWriterActor.options(
        name=name or writer_name(path),
        get_if_exists=True,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node_id, soft=False),
    ).remote(path)
    try:
        actual_path, error = _unwrap(handle.ready.remote(), timeout, path)
    except StoreError:
        ray.kill(handle)
        raise
    if error is not None:
        ray.kill(handle)
        raise StoreError(error)
    if actual_path != path:
        raise StoreError(
            f"the Ray actor named {name!r} writes {actual_path}, not {path}; choose another name"
        )
    return RemoteFitsStore(handle, path)
