"""The trainer's client to the fitting actors: bounded, non-blocking submission, results as counts.

The pool keeps at most `max_inflight_per_actor` batches on each actor (one fitting, the next
queued on the actor: pipelining) and drops what does not fit, so `submit` never waits for fitting.
Actors write their candidates to the store writer themselves; the pool only collects small
`BatchOutcome` summaries, without blocking (`ray.wait(timeout=0)` in `poll`). An actor that
dies is restarted by Ray (`max_restarts`); the batches it held are retried once on a live actor,
then dropped and counted (the slot and retry bookkeeping is `inflight.InflightQueue`, pure and
tested without Ray). Not thread-safe: use one pool from one thread.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import ray
from ray.exceptions import (
    ActorDiedError,
    GetTimeoutError,
    ObjectLostError,
    RayActorError,
    WorkerCrashedError,
)

from fitting_workers.actor import FittingActor, connect_store_writer, remote_actor_class
from fitting_workers.config import FittingConfig
from fitting_workers.counts import FitCounts
from fitting_workers.inflight import InflightQueue, Pending
from fitting_workers.jobs import BatchOutcome, FitJobBatch, error_line
from fitting_workers.runtime import start_ray, stop_ray
from spin.errors import UserError

if TYPE_CHECKING:
    from spin.body.files import BodyFiles

# A batch whose actor process went away: the work is lost, not wrong, so it is worth a retry.
LOST_WITH_ACTOR = (RayActorError, ObjectLostError, WorkerCrashedError)
STALENESS_WINDOW = 256
# How soon to ask again an actor that answered "restarting" (a restart takes seconds).
REVIVAL_PING_INTERVAL_S = 0.5


def store_argument(store):
    """What the actors are given for `store`: for the store writer actor, a by-name connector.

    A pickled actor handle among an actor's constructor arguments puts them in Ray's object store,
    where they may be gone when Ray restarts the actor (ray-project/ray#53727); a name and a path
    are plain values that stay with the actor's definition. A writer opened under any name (not
    only the default `writer_name(path)`) is found among the named actors; a handle of an actor
    without a name is passed as it is.
    """
    from fitting_workers.store_actor import RemoteFitsStore
    from store import FitsStore

    if isinstance(store, FitsStore):
        raise TypeError(
            "FittingPool needs the store's single writer actor, not a FitsStore handle (each actor would "
            "open its own writer): pass fitting_workers.store_actor.open_store_writer(path)."
        )
    if isinstance(store, RemoteFitsStore) and store.path:
        name = writer_actor_name(store)
        if name is not None:
            return functools.partial(connect_store_writer, name, store.path)
    return store


def writer_actor_name(store) -> str | None:
    """The Ray name of a `RemoteFitsStore`'s actor (in this job's namespace), None if it has none.

    Handles compare by actor id (`ActorHandle.__eq__`): the store's own `name` if it has one, the
    default name of its path, then every named actor are tried in that order.
    """
    from fitting_workers.store_actor import writer_name

    candidates = [getattr(store, "name", None), writer_name(store.path)]
    for name in candidates:
        if name and _named_actor(name) == store.handle:
            return name
    for entry in ray.util.list_named_actors(all_namespaces=False):
        name = entry if isinstance(entry, str) else entry.get("name")
        if name and name not in candidates and _named_actor(name) == store.handle:
            return name
    return None


def _named_actor(name: str):
    try:
        return ray.get_actor(name)
    except ValueError:  # no live actor of that name
        return None


def _creation_error(exc: RayActorError) -> BaseException | None:
    """The exception an actor's constructor raised, when that is why the actor died."""
    for arg in exc.args:
        cause = getattr(arg, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return None


class FittingPool:
    """Ray fitting actors behind a bounded, non-blocking queue.

    config: actor count, resources and queue bounds; body_files: what each actor builds its body
    model and SMPLify from; store: the store writer (`RemoteFitsStore`) the actors write to, or a
    function without arguments, run in each actor, that returns a store.
    on_outcome: called with each collected `BatchOutcome` (progress bars, logging).
    actor_class: the class wrapped as the Ray actor (tests substitute a stand-in fit).
    Ray must be running (`runtime.ray_session`); if it is not, the pool starts it from
    `config.ray_address` and stops it in `shutdown()`.
    """

    def __init__(
        self,
        config: FittingConfig,
        body_files: BodyFiles,
        store,
        *,
        on_outcome: Callable[[BatchOutcome], None] | None = None,
        actor_class: type = FittingActor,
    ) -> None:
        self.config = config
        self._owns_ray = start_ray(address=config.ray_address, connect_timeout_s=config.connect_timeout_s,
                                   start_timeout_s=config.start_timeout_s)
        self._on_outcome = on_outcome
        options = {
            "num_cpus": config.cpus_per_actor,
            "num_gpus": config.gpus_per_actor,
            "max_restarts": config.max_restarts,
            "max_task_retries": 0,  # the pool decides about retries: once, then drop
            "scheduling_strategy": config.scheduling.upper(),
        }
        remote_class = remote_actor_class(actor_class)
        store_arg = store_argument(store)
        self._actors = [
            remote_class.options(**options).remote(
                body_files, config.smplify, config.torch_threads, config.device, store_arg
            )
            for _ in range(config.num_actors)
        ]
        self._queue = InflightQueue(len(self._actors), config.max_inflight_per_actor, config.max_retries)
        self._state = self._queue.actors
        self._revival_pings: dict[ray.ObjectRef, int] = {}
        self._ping_due: dict[int, float] = {}  # actor -> when to send its next revival ping
        self._totals = FitCounts()  # jobs fitted, failed, written (from the outcomes) and submitted
        self._restarts = 0
        self._staleness: deque[int] = deque(maxlen=STALENESS_WINDOW)
        self._step = 0
        self._first_submit: float | None = None
        self._last_error: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ trainer API

    def set_step(self, step: int) -> None:
        """The trainer's current step; staleness is measured against it when a batch is collected."""
        self._step = int(step)

    def submit(self, batch: FitJobBatch, block: bool = False, timeout: float | None = None) -> bool:
        """Hand a batch to the least busy live actor; False when it was dropped (and counted).

        Never waits unless `block` is True (whole-dataset fitting, where nothing may be dropped):
        then it waits up to `timeout` seconds (None: as long as an actor may come back) for room.
        """
        if self._closed:
            raise RuntimeError("FittingPool.submit after shutdown()")
        if self._first_submit is None:
            self._first_submit = time.monotonic()
        self._totals.offered += len(batch)
        self.poll()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            actor = self._queue.free_actor()
            if actor is not None:
                self._dispatch(Pending(batch, actor))
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if not block or not self._queue.may_get_room() or (remaining is not None and remaining <= 0):
                self._queue.drop(batch)
                return False
            self._wait_any(remaining)

    def poll(self) -> None:
        """Collect every finished batch and ping without waiting; resubmit batches lost with an actor."""
        self._send_due_pings()
        refs = [*self._queue.inflight, *self._revival_pings]
        if refs:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            self._handle(ready)
        self._dispatch_retries()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no batch is in flight or waiting for a retry; False if `timeout` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.poll()
        while self._queue.inflight or self._queue.retry:
            if not self._queue.inflight and not self._queue.any_restarting():
                self._queue.drop_retries()  # no actor can take them any more
                break
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._wait_any(remaining)
        return True

    def wait_restarts(self, timeout: float | None = None) -> bool:
        """Wait until no actor is in the middle of a restart; False if `timeout` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.poll()
        while self._queue.any_restarting():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._wait_any(remaining)
        return True

    def health(self, timeout: float | None = None) -> list[bool]:
        """Ping every actor (answered beside any running batch); True where it answered in time."""
        timeout = self.config.health_timeout_s if timeout is None else timeout
        self.poll()
        refs = {}
        for index, actor in enumerate(self._actors):
            if self._state[index].alive:
                refs[actor.ping.remote()] = index
        answered = [False] * len(self._actors)
        if refs:
            ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
            for ref in ready:
                try:
                    info = ray.get(ref)
                except Exception:  # a ping that fails means unhealthy, nothing more
                    continue
                self._seen(refs[ref], info, fresh=True)
                answered[refs[ref]] = True
        return answered

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Block until every actor has built its body model and SMPLify (start of a run)."""
        refs = [actor.ping.remote() for actor in self._actors]
        try:
            infos = ray.get(refs, timeout=timeout)
        except GetTimeoutError as exc:
            raise UserError(
                f"the fitting actors did not start within {timeout:.0f} s; the Ray cluster may lack the "
                f"resources asked for (cpus_per_actor={self.config.cpus_per_actor}, "
                f"gpus_per_actor={self.config.gpus_per_actor}): lower them or add nodes."
            ) from exc
        except RayActorError as exc:
            cause = _creation_error(exc)
            if isinstance(cause, UserError):  # e.g. a body model file that does not load
                raise UserError(str(cause)) from None
            text = error_line(cause) if cause is not None else error_line(exc)
            raise UserError(f"a fitting actor could not start: {text}") from exc
        for index, info in enumerate(infos):
            self._seen(index, info, fresh=True)

    def actor_info(self) -> list[dict]:
        """Per actor: last known `pid`, `node_id`, `incarnation`, `device` (from pings and outcomes),
        and now `alive`, `restarting` and `inflight` (batches)."""
        return [dict(state.info, alive=state.alive, restarting=state.restarting, inflight=state.inflight)
                for state in self._state]

    @property
    def actors(self) -> list:
        """The Ray actor handles (for inspection and fault injection; do not call them directly)."""
        return list(self._actors)

    def totals(self) -> FitCounts:
        """The job counts so far (a copy): fitted, failed by reason, written, dropped, retried …"""
        return replace(self._totals, failed=dict(self._totals.failed), dropped=self._queue.dropped,
                       retried=self._queue.retried)

    def counts(self) -> dict:
        """Running totals without polling (safe inside an `on_outcome` callback)."""
        totals = self.totals()
        elapsed = time.monotonic() - self._first_submit if self._first_submit is not None else 0.0
        return {
            **totals.as_dict(),
            "submitted": totals.offered,
            "fits_per_s": totals.fitted / elapsed if elapsed > 0 else 0.0,
            "queue_depth": self._queue.queue_depth,
            "staleness_steps": float(np.mean(self._staleness)) if self._staleness else 0.0,
            "staleness_last_steps": self._staleness[-1] if self._staleness else 0,
            "restarts": self._restarts,
            "inflight_jobs": self._queue.queued_jobs,
            "alive_actors": sum(state.alive for state in self._state),
            "restarting": sum(state.alive and state.restarting for state in self._state),
            "last_error": self._last_error,
        }

    def stats(self) -> dict:
        """Collect what finished, then the totals.

        Job counts (`FitCounts.as_dict()`): `fitted` (SMPLify ran), `failed` (not written; by
        reason in `failed_by_reason`),
        `accepted` (written: better than the stored fit), `improved` (accepted where the key already
        had a fit), `dropped` (never fitted: no room, or lost twice), `retried`, `errors` (batches
        that raised, in jobs). `accepted_frac` / `improved_frac` are over `fitted`; `fits_per_s`
        over the time since the first submit; `queue_depth` counts batches in flight or waiting for
        a retry; `staleness_steps` is the mean over the last 256 batches of (step at collection −
        step of the prediction), `staleness_last_steps` that of the latest batch; `restarts` counts
        actors seen back with a new process after dying; `restarting` the actors being restarted
        now; `alive_actors` excludes actors Ray gave up on.
        """
        self.poll()
        return self.counts()

    def shutdown(self) -> None:
        """Stop the actors (batches still in flight are abandoned and counted); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._totals.abandoned += self._queue.abandon()
        self._revival_pings.clear()
        self._ping_due.clear()
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone, or Ray already stopped
                pass
        if self._owns_ray:
            stop_ray()

    def __enter__(self) -> FittingPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    # ------------------------------------------------------------------ internals

    def _dispatch(self, pending: Pending) -> None:
        ref = self._actors[pending.actor].fit_batch.remote(pending.batch)
        self._queue.dispatched(ref, pending)

    def _dispatch_retries(self) -> None:
        while (pending := self._queue.next_retry()) is not None:
            self._dispatch(pending)

    def _send_due_pings(self) -> None:
        now = time.monotonic()
        for index, due in list(self._ping_due.items()):
            if due <= now:
                del self._ping_due[index]
                self._revival_pings[self._actors[index].ping.remote()] = index

    def _wait_any(self, timeout: float | None) -> None:
        """Block until a batch or ping finishes, a revival ping is due, or `timeout` passes."""
        self._send_due_pings()
        if self._ping_due:
            next_ping = min(self._ping_due.values()) - time.monotonic()
            timeout = max(0.0, next_ping if timeout is None else min(timeout, next_ping))
        refs = [*self._queue.inflight, *self._revival_pings]
        if refs:
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
            self._handle(ready)
        elif timeout:
            time.sleep(timeout)
        self._send_due_pings()
        self._dispatch_retries()

    def _handle(self, ready: list) -> None:
        for ref in ready:
            if ref in self._revival_pings:
                self._handle_revival(ref)
            elif ref in self._queue.inflight:
                self._handle_batch(ref)

    def _handle_revival(self, ref) -> None:
        index = self._revival_pings.pop(ref)
        try:
            info = ray.get(ref)
        except ActorDiedError as exc:  # Ray gave up: restarts used up, or the constructor failed
            self._state[index].alive = False
            self._last_error = error_line(exc)
            return
        except LOST_WITH_ACTOR:  # "the actor is restarting": ask again shortly
            self._ping_due[index] = time.monotonic() + REVIVAL_PING_INTERVAL_S
            return
        self._seen(index, info, fresh=True)

    def _handle_batch(self, ref) -> None:
        pending = self._queue.finished(ref)
        try:
            outcome: BatchOutcome = ray.get(ref)
        except LOST_WITH_ACTOR as exc:
            self._on_death(pending.actor, exc)
            self._queue.lost(pending)
            return
        except Exception as exc:  # a bug in the actor outside its own guard: still only a value
            size = len(pending.batch)
            outcome = BatchOutcome(size=size, counts=FitCounts(errors=size), step=pending.batch.step,
                                   error=error_line(exc))
        if outcome.incarnation:
            self._seen(pending.actor, {"incarnation": outcome.incarnation, "node_id": outcome.node_id})
        self._count(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    def _count(self, outcome: BatchOutcome) -> None:
        # `offered` was counted at submit time (a retried batch is offered once).
        self._totals = self._totals + replace(outcome.counts, offered=0)
        if outcome.error is not None:
            self._last_error = outcome.error
            return
        self._staleness.append(self._step - outcome.step)

    def _seen(self, index: int, info: dict, fresh: bool = False) -> None:
        """An answer from actor `index`: a new incarnation means Ray restarted it.

        `fresh`: the answer is to a ping sent after any failure seen so far, so an actor marked as
        restarting that answers with its old incarnation never died (a transient RPC error). A
        batch outcome may predate the failure, so only a new incarnation counts there.
        """
        state = self._state[index]
        incarnation = info.get("incarnation")
        if state.incarnation is not None and incarnation != state.incarnation:
            self._restarts += 1
            state.restarting = False
        elif state.restarting and fresh:
            if state.incarnation is None:  # died before it ever answered: this answer is the restart
                self._restarts += 1
            state.restarting = False
        state.incarnation = incarnation
        state.info.update(info)

    def _on_death(self, index: int, exc: BaseException) -> None:
        """Actor `index` lost a batch: stop sending it work and ping until its restart answers.

        Several batches fail with one death; the actor is marked once. Ray restarts it (up to
        `max_restarts`); the ping then answers with a new incarnation (counted as a restart), or
        fails with ActorDiedError when Ray gave up (the actor is then left out for good).
        """
        state = self._state[index]
        self._last_error = error_line(exc)
        if not state.alive or state.restarting:
            return
        state.restarting = True
        if getattr(exc, "actor_init_failed", False):
            state.alive = False
            return
        self._revival_pings[self._actors[index].ping.remote()] = index
