"""The pool's bounded in-flight bookkeeping, without Ray: which actor gets a batch, what is retried.

Pure and deterministic (tokens are opaque: Ray object refs in the pool, anything in tests): at
most `max_inflight` batches per actor (one fitting, the next queued on it), the least busy live
actor first (rotating among equals), actors that are restarting or gone get nothing, and a batch
lost with its actor is retried at most `max_retries` times, then dropped. Counts are in jobs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from typing import Any


@dataclass
class Pending:
    """A batch on (or bound for) an actor; `attempt` counts its resubmissions."""

    batch: Any
    actor: int
    attempt: int = 0


@dataclass
class ActorState:
    inflight: int = 0
    alive: bool = True  # False once Ray gave up restarting it
    restarting: bool = False  # lost a batch; pings wait for the restarted incarnation
    incarnation: str | None = None
    info: dict = field(default_factory=dict)


class InflightQueue:
    """Per-actor slots, the batches in flight (by token) and the retry queue."""

    def __init__(self, num_actors: int, max_inflight: int, max_retries: int) -> None:
        if num_actors < 1 or max_inflight < 1 or max_retries < 0:
            raise ValueError("InflightQueue needs num_actors ≥ 1, max_inflight ≥ 1, max_retries ≥ 0")
        self.max_inflight = max_inflight
        self.max_retries = max_retries
        self.actors = [ActorState() for _ in range(num_actors)]
        self.inflight: dict[Hashable, Pending] = {}
        self.retry: deque[Pending] = deque()
        self.dropped = 0
        self.retried = 0
        self._next = 0

    def free_actor(self) -> int | None:
        """Least busy live actor with room, rotating among equals so work spreads over actors."""
        best = None
        n = len(self.actors)
        for offset in range(n):
            index = (self._next + offset) % n
            state = self.actors[index]
            if not state.alive or state.restarting or state.inflight >= self.max_inflight:
                continue
            if best is None or state.inflight < self.actors[best].inflight:
                best = index
        if best is not None:
            self._next = (best + 1) % n
        return best

    def may_get_room(self) -> bool:
        """Some actor is alive (busy or restarting ones free up eventually)."""
        return any(state.alive for state in self.actors)

    def any_restarting(self) -> bool:
        return any(state.alive and state.restarting for state in self.actors)

    def dispatched(self, token: Hashable, pending: Pending) -> None:
        self.inflight[token] = pending
        self.actors[pending.actor].inflight += 1

    def finished(self, token: Hashable) -> Pending:
        """The batch behind `token` came back (done or lost): its slot is free again."""
        pending = self.inflight.pop(token)
        self.actors[pending.actor].inflight -= 1
        return pending

    def lost(self, pending: Pending) -> bool:
        """A batch lost with its actor: queued for a retry (True) or, retries used up, dropped (False)."""
        if pending.attempt < self.max_retries:
            self.retried += len(pending.batch)
            self.retry.append(replace(pending, attempt=pending.attempt + 1))
            return True
        self.drop(pending.batch)
        return False

    def drop(self, batch: Any) -> None:
        self.dropped += len(batch)

    def next_retry(self) -> Pending | None:
        """The oldest batch waiting for a retry, bound to a free actor; None if none or no room.

        With no live actor left, every waiting batch is dropped."""
        if self.retry and not self.may_get_room():
            self.drop_retries()
        if not self.retry:
            return None
        actor = self.free_actor()
        if actor is None:
            return None
        return replace(self.retry.popleft(), actor=actor)

    def drop_retries(self) -> None:
        while self.retry:
            self.drop(self.retry.popleft().batch)

    def abandon(self) -> int:
        """Forget everything in flight or waiting (shutdown); returns how many jobs that was."""
        jobs = sum(len(p.batch) for p in self.inflight.values()) + sum(len(p.batch) for p in self.retry)
        for state in self.actors:
            state.inflight = 0
        self.inflight.clear()
        self.retry.clear()
        return jobs

    @property
    def queue_depth(self) -> int:
        """Batches in flight or waiting for a retry."""
        return len(self.inflight) + len(self.retry)

    @property
    def queued_jobs(self) -> int:
        return sum(len(p.batch) for p in self.inflight.values()) + sum(len(p.batch) for p in self.retry)
