"""Typed configuration of the fitting actor pool (YAML key `fitting:` in the training configs)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fitting_workers.smplify import SmplifyConfig

FITTING_MODES = ("off", "sync", "async")


@dataclass
class FittingConfig:
    """How many SMPLify actors run, where, and how much work may wait for them.

    `mode`: `off` (no fitting), `sync` (fit inside the training step, SPIN's original semantics) or
    `async` (the trainer publishes jobs to the actor pool and never waits).
    `cpus_per_actor` / `gpus_per_actor` are Ray resource requests (fractions allowed); an actor
    fits on CUDA when it holds any GPU share. `max_inflight_per_actor` bounds the queue: one batch
    runs while the next waits on the actor (pipelining); further batches are dropped and counted.
    `max_retries`: how often a batch lost with a dead actor is resubmitted. `max_restarts`: how
    often Ray restarts a dead actor before the pool gives up on it. `scheduling`: Ray's
    `"SPREAD"` puts actors on as many nodes as possible, `"DEFAULT"` packs them.
    `ray_address`: None starts Ray locally on this machine; an address (`auto`, `HOST:PORT`) joins
    a running cluster, giving up with a clear error after `connect_timeout_s` seconds.
    `start_timeout_s`: how long a local Ray may take to start (retried while Ray's own start-up
    wait runs out on a loaded machine) before a clear error.
    """

    mode: str = "async"
    num_actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    torch_threads: int = 1
    batch_size: int = 32
    max_inflight_per_actor: int = 2
    max_retries: int = 1
    max_restarts: int = 3
    scheduling: str = "SPREAD"
    health_timeout_s: float = 5.0
    ray_address: str | None = None
    connect_timeout_s: float = 30.0
    start_timeout_s: float = 120.0
    smplify: SmplifyConfig = field(default_factory=SmplifyConfig)

    def __post_init__(self) -> None:
        from spin.errors import UserError

        if self.mode not in FITTING_MODES:
            raise UserError(f"fitting.mode is {self.mode!r}; set it to one of {', '.join(FITTING_MODES)}.")
        at_least_one = ("num_actors", "torch_threads", "batch_size", "max_inflight_per_actor")
        not_negative = ("cpus_per_actor", "gpus_per_actor", "max_retries", "max_restarts")
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise UserError(f"fitting.{name} is {getattr(self, name)!r}; set it to 1 or more.")
        for name in not_negative:
            if getattr(self, name) < 0:
                raise UserError(f"fitting.{name} is {getattr(self, name)!r}; set it to 0 or more.")
        for name in ("health_timeout_s", "connect_timeout_s", "start_timeout_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"fitting.{name} is {getattr(self, name)!r}; set it above 0.")
        if self.scheduling.upper() not in ("SPREAD", "DEFAULT"):
            raise UserError(f"fitting.scheduling is {self.scheduling!r}; set it to SPREAD or DEFAULT.")

    @property
    def device(self) -> str:
        """Torch device of every actor: CUDA when the actor holds a GPU share."""
        return "cuda" if self.gpus_per_actor > 0 else "cpu"
