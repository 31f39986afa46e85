"""Starting and stopping Ray for the fitting actors: local by default, or joining a running cluster."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

# Small on purpose: fitting batches are a few kilobytes, and several Ray instances may share a
# machine's /dev/shm (tests, a trainer beside `spin fits init`).
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024 * 1024


def _quiet_ray_environment() -> None:
    """No usage-stats prompt or upload, no network access needed for a local run."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = DEFAULT_OBJECT_STORE_BYTES,
) -> bool:
    """Start local Ray (no dashboard) or join the cluster at `address`; False when Ray already runs here.

    The caller owns what this call started and stops it with `stop_ray()`; a Ray that was already
    initialised (by the trainer, a test, or the user) is left alone.
    """
    import ray

    if ray.is_initialized():
        return False
    _quiet_ray_environment()
    common = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            from spin.errors import UserError

            raise UserError(
                f"could not join the Ray cluster at {address!r} ({exc}); start it with `ray start --head` "
                "or drop --ray-address to run locally."
            ) from exc
    else:
        # "local" always starts a private instance: a bare ray.init() would join any cluster that
        # `ray start` left on this machine (/tmp/ray/ray_current_cluster), e.g. another user's.
        ray.init(
            address="local",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            include_dashboard=False,
            object_store_memory=object_store_memory,
            **common,
        )
    return True


def stop_ray() -> None:
    """Disconnect from Ray; a local instance started by this process is stopped with all its processes."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the duration of a `with` block: started (or joined) on entry, stopped on exit.

    Without `address`, Ray starts locally on `num_cpus` cores (all of them when None) with no
    dashboard; with one, the driver joins that cluster. Ray that was running before the block is
    reused and left running.
    """
    started = start_ray(address=address, num_cpus=num_cpus)
    try:
        yield
    finally:
        if started:
            stop_ray()


def current_node_id() -> str:
    """Hex id of the Ray node this process runs on."""
    import ray

    return ray.get_runtime_context().get_node_id()
