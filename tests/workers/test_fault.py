"""An actor SIGKILLed in the middle of `spin fits init`: Ray restarts it, its batches are retried once,
the run completes, and the store verifies."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from fitting_workers.config import FittingConfig
from fitting_workers.dataset_fit import fit_dataset, load_initialisation
from fitting_workers.runtime import ray_session
from fitting_workers.smplify import SmplifyConfig
from fitting_workers.store_actor import open_store_writer
from spin.body.files import resolve_body_files
from spin.data.spin_format import load_spin_npz
from store import FitsStore
from store.verify import verify_store

pytestmark = pytest.mark.e2e


def test_actor_killed_during_fits_init_is_restarted_and_the_run_completes(
    synthetic_dataset, tmp_path, assert_ray_stopped
):
    data, init_path, problems = synthetic_dataset
    annotations = load_spin_npz(data)
    init = load_initialisation(init_path, len(annotations))
    config = FittingConfig(num_actors=2, cpus_per_actor=0.5, batch_size=4, max_retries=1, max_restarts=3,
                           smplify=SmplifyConfig(iters_camera=5, iters_body=10))
    killed: dict[str, int] = {}
    pool_holder = {}

    def kill_a_busy_actor_once(done: int, total: int) -> None:
        # Once the first batch is done, SIGKILL an actor that holds batches (one running, one queued).
        busy = [info for info in pool_holder["pool"].actor_info() if info["inflight"] > 0]
        if not killed and done > 0 and busy:
            os.kill(busy[0]["pid"], signal.SIGKILL)
            killed["pid"] = busy[0]["pid"]

    store_path = tmp_path / "fits.lmdb"
    with ray_session(num_cpus=2):
        writer = open_store_writer(str(store_path))
        report = fit_dataset(annotations, "synth", writer, config, resolve_body_files(), init=init,
                             on_progress=kill_a_busy_actor_once,
                             on_ready=lambda pool: pool_holder.setdefault("pool", pool))
    assert_ray_stopped()

    assert killed, "the actor was never killed"
    n = len(problems)
    assert report.restarts >= 1
    assert report.counts.retried >= config.batch_size  # the killed actor held at least one batch
    assert report.counts.retried % config.batch_size == 0
    # Every lost batch was retried once and succeeded, or was dropped and counted: nothing vanished.
    assert report.counts.fitted + report.counts.dropped + report.counts.errors == n
    # A retried batch may already have been written by its first attempt (killed after its one
    # put_if_better): the retry's equal loss is then refused, so accepted can fall short of fitted.
    assert report.counts.accepted <= report.counts.fitted - report.counts.failed_total
    # The retries ran on the surviving actor, so nothing was dropped and every sample has its fit.
    assert report.counts.dropped == 0 and report.counts.errors == 0
    assert report.in_store == n - report.counts.failed_total
    with FitsStore(store_path, readonly=True) as store:
        stored = store.get([f"synth/{i}" for i in range(n)])
    assert int(stored["present"].sum()) == report.in_store
    assert np.isfinite(stored["loss"][stored["present"]]).all()
    verification = verify_store(store_path)
    assert verification.ok, verification
