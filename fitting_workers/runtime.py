"""Starting and stopping Ray for the fitting actors: local by default, or joining a running cluster."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Small on purpose: fitting batches are a few kilobytes, and several Ray instances may share a
# machine's /dev/shm (tests, a trainer beside `spin fits init`).
DEFAULT_OBJECT_STORE_BYTES = 512 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT_S = 30.0
# A local start on a loaded machine can take long: Ray waits 30 s (fixed in Ray) for its raylet to
# register, so attempts are repeated until this bound, and Ray's GCS port wait is set to it.
DEFAULT_START_TIMEOUT_S = 120.0
GCS_PORT_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
RAY_DEFAULT_GCS_PORT = 6379


def _unreachable(address: str, why: str) -> Exception:
    from spin.errors import UserError

    return UserError(
        f"could not join the Ray cluster at {address!r} ({why}); start it with `ray start --head`, fix "
        "fitting.ray_address (--ray-address), or drop it to run Ray locally."
    )


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) of a `HOST[:PORT]` or `ray://HOST:PORT` address; None for `auto` and the like."""
    bare = address.removeprefix("ray://")
    if bare in ("auto", "local", "") or "/" in bare:
        return None
    host, _, port = bare.rpartition(":") if ":" in bare else (bare, "", str(RAY_DEFAULT_GCS_PORT))
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def probe_address(address: str, timeout_s: float) -> None:
    """A UserError naming `address` unless a TCP connection to its GCS port opens within `timeout_s`.

    `ray.init` retries an unreachable GCS for a long time; this answers in at most the timeout.
    """
    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            pass
    except OSError as exc:
        raise _unreachable(address, f"nothing answered on {endpoint[0]}:{endpoint[1]} within "
                                    f"{timeout_s:g} s: {exc.strerror or type(exc).__name__}") from None


def _init_within(timeout_s: float, address: str, **kwargs) -> None:
    """`ray.init(address=...)` bounded by `timeout_s` (it runs on a helper thread)."""
    import ray

    failure: list[BaseException] = []

    def join() -> None:
        try:
            ray.init(address=address, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=join, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise _unreachable(address, f"no Ray cluster answered within {timeout_s:g} s "
                                    "(fitting.connect_timeout_s)")
    if failure:
        exc = failure[0]
        if isinstance(exc, ConnectionError | TimeoutError | RuntimeError):
            raise _unreachable(address, str(exc).strip().splitlines()[0] if str(exc).strip() else
                               type(exc).__name__) from exc
        raise exc


def _not_started(why: str, timeout_s: float) -> Exception:
    from spin.errors import UserError

    return UserError(
        f"Ray did not start on this machine within {timeout_s:g} s ({why}); the machine may be "
        "overloaded: raise fitting.start_timeout_s, free some CPU, or run with fitting.mode=sync or off."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def start_local_within(timeout_s: float, **kwargs) -> None:
    """`ray.init(address="local", **kwargs)`, retried until `timeout_s` while start-up times out.

    Ray gives its raylet a fixed 30 s to register and raises "The current node timed out during
    startup" under load; each failed attempt is shut down (its processes stopped) before the next.
    When the time is spent, or Ray fails otherwise, a UserError in one sentence. An attempt that
    begins before the deadline may overrun it by Ray's own waits (bounded).
    """
    import time

    import ray

    os.environ.setdefault(GCS_PORT_WAIT_ENV, str(max(1, int(round(timeout_s)))))
    deadline = time.monotonic() + timeout_s
    attempts = 0
    while True:
        attempts += 1
        try:
            ray.init(address="local", **kwargs)
            return
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception for a start-up timeout
            _shutdown_quietly()
            timed_out = "timed out" in str(exc)
            if not timed_out or time.monotonic() >= deadline:
                why = _first_line(exc) + (f"; {attempts} attempts" if attempts > 1 else "")
                raise _not_started(why, timeout_s) from None


def _shutdown_quietly() -> None:
    import ray

    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - a half-started Ray: nothing more to stop
        pass


def _quiet_ray_environment() -> None:
    """No usage-stats prompt or upload, no network access needed for a local run."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def start_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    object_store_memory: int | None = DEFAULT_OBJECT_STORE_BYTES,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> bool:
    """Start local Ray (no dashboard) or join the cluster at `address`; False when Ray already runs here.

    Joining is bounded: an address whose GCS port does not answer, or a cluster that does not let
    the driver in within `connect_timeout_s`, is a UserError naming the address; a local start is
    retried while Ray's start-up times out, up to `start_timeout_s`, then a UserError. The caller owns
    what this call started and stops it with `stop_ray()`; a Ray that was already initialised (by
    the trainer, a test, or the user) is left alone.
    """
    import ray

    if ray.is_initialized():
        return False
    _quiet_ray_environment()
    common = {"log_to_driver": False, "logging_level": logging.ERROR, "configure_logging": True}
    if address:
        probe_address(address, connect_timeout_s)
        _init_within(connect_timeout_s, address, **common)
    else:
        # "local" always starts a private instance: a bare ray.init() would join any cluster that
        # `ray start` left on this machine (/tmp/ray/ray_current_cluster), e.g. another user's.
        start_local_within(
            start_timeout_s,
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
def ray_session(address: str | None = None, num_cpus: int | None = None,
                connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                start_timeout_s: float = DEFAULT_START_TIMEOUT_S) -> Iterator[None]:
    """Ray for the duration of a `with` block: started (or joined) on entry, stopped on exit.

    Without `address`, Ray starts locally on `num_cpus` cores (all of them when None) with no
    dashboard; with one, the driver joins that cluster. Ray that was running before the block is
    reused and left running.
    """
    started = start_ray(address=address, num_cpus=num_cpus, connect_timeout_s=connect_timeout_s,
                        start_timeout_s=start_timeout_s)
    try:
        yield
    finally:
        if started:
            stop_ray()
