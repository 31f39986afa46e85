"""`spin fits init --ray-address` on a two-node Ray cluster on this machine: actors on both nodes,
the store writer on the head, the cluster stopped afterwards (only the processes this test started).

Skip with SPIN_SKIP_CLUSTER_TEST=1 where `ray start` cannot run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from spin.cli.fits_init import fits_init_command
from store import FitsStore

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("SPIN_SKIP_CLUSTER_TEST") == "1", reason="SPIN_SKIP_CLUSTER_TEST=1"),
]

RAY = str(Path(sys.executable).with_name("ray"))
HEAD_PORT = 6500  # the workers helper's range: 6500-6599
# Every port a node opens, spelled out, so two nodes (and other users' Ray) never collide.
HEAD_PORTS = ["--node-manager-port", "6501", "--object-manager-port", "6502",
              "--ray-client-server-port", "6503", "--dashboard-agent-listen-port", "6504",
              "--dashboard-agent-grpc-port", "6505",
              "--runtime-env-agent-port", "6506", "--metrics-export-port", "6507",
              "--min-worker-port", "6520", "--max-worker-port", "6539"]
WORKER_PORTS = ["--node-manager-port", "6511", "--object-manager-port", "6512",
                "--dashboard-agent-listen-port", "6514", "--dashboard-agent-grpc-port", "6515",
                "--runtime-env-agent-port", "6516", "--metrics-export-port", "6517",
                "--min-worker-port", "6540", "--max-worker-port", "6559"]
# Token authentication off on both sides: the cluster and this driver agree without a token file.
CLUSTER_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def _ray_start(args: list[str], log: Path, temp_dir: str) -> subprocess.Popen:
    """`ray start --block` in its own process group, so the test can stop exactly what it started.

    A private --temp-dir keeps `ray start` from pointing /tmp/ray/ray_current_cluster (where a bare
    `ray.init()` of any user on this machine looks for a cluster) at this short-lived one.
    """
    return subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
         "--temp-dir", temp_dir, *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **CLUSTER_ENV},
    )


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # the group may outlive its leader for a moment
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(process.pid):
            time.sleep(0.2)
        if not _group_alive(process.pid):
            return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def two_node_cluster(tmp_path, monkeypatch):
    for name, value in CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    started = []
    temp_dir = tempfile.mkdtemp(prefix="spinray")  # short: Ray's socket paths must stay < 108 bytes
    try:
        head_args = ["--head", "--include-dashboard=false", "--port", str(HEAD_PORT), "--num-cpus", "1",
                     "--resources", json.dumps({"head": 1}), *HEAD_PORTS]
        started.append(_ray_start(head_args, tmp_path / "head.log", temp_dir))
        address = f"127.0.0.1:{HEAD_PORT}"
        deadline = time.monotonic() + 120
        while subprocess.run([RAY, "health-check", "--address", address], capture_output=True,
                             env={**os.environ, **CLUSTER_ENV}).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        started.append(_ray_start(["--address", address, "--num-cpus", "1", "--resources",
                                   json.dumps({"worker_node": 1}), *WORKER_PORTS], tmp_path / "worker.log",
                                  temp_dir))
        yield address, _wait_for_nodes(address, 2, tmp_path)
    finally:
        for process in reversed(started):
            _stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not any(_group_alive(process.pid) for process in started), "cluster processes left behind"


def _wait_for_nodes(address: str, count: int, tmp_path: Path) -> dict[str, str]:
    """Join briefly until `count` nodes are alive; returns {"head": node id, "worker_node": node id}."""
    import ray

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        deadline = time.monotonic() + 120
        while True:
            nodes = [node for node in ray.nodes() if node["Alive"]]
            if len(nodes) >= count:
                break
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.5)
        return {name: node["NodeID"] for node in nodes for name in ("head", "worker_node")
                if node["Resources"].get(name)}
    finally:
        ray.shutdown()


def test_fits_init_on_a_two_node_cluster(two_node_cluster, synthetic_dataset, tmp_path):
    address, node_ids = two_node_cluster
    data, _, problems = synthetic_dataset
    store_path = tmp_path / "fits.lmdb"
    # One CPU per actor and one CPU per node: the two actors can only run one on each node.
    report = fits_init_command(data=data, store=store_path, dataset="synth", workers=2, batch_size=4, iters=5,
                               cpus_per_actor=1.0, ray_address=address)

    assert sorted(report.actor_nodes) == sorted(node_ids.values())
    assert report.writer_node == node_ids["head"]
    n = len(problems)
    assert report.counts.fitted == report.in_store == n and report.counts.dropped == 0
    with FitsStore(store_path, readonly=True) as store:
        stored = store.get([f"synth/{i}" for i in range(n)])
    assert stored["present"].all() and np.isfinite(stored["loss"]).all()
