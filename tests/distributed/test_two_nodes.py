"""A two-node loopback Ray cluster: a rank's reads on the node without the store go through the writer
actor, see fits written from the head, and never open the LMDB file.

The nodes are started with `ray start` in their own process groups and a private --temp-dir, on
ports picked free here, and stopped by process group (other users' Ray on this machine is left
alone). Skip with SPIN_SKIP_CLUSTER_TEST=1 where `ray start` cannot run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import rank_programs
from conftest import N_TRAIN as N_TRAIN_RANKS
from conftest import cluster_helpers, collated_batch, mapped_files, put_fits, rank_config

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.environ.get("SPIN_SKIP_CLUSTER_TEST") == "1", reason="SPIN_SKIP_CLUSTER_TEST=1"),
]

KEYS = [f"synth/{i}" for i in range(6)]
PORTS_PER_NODE = 30  # 10 named ports + a range of 20 worker ports


def _free_block(count: int) -> int:
    """First port of `count` consecutive ports that are free now (bound and released)."""
    for _ in range(200):
        base = random.randrange(20000, 40000 - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def _node_ports(base: int, head: bool) -> list[str]:
    names = ["--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    if head:
        names.append("--ray-client-server-port")
    args = [item for i, name in enumerate(names) for item in (name, str(base + 1 + i))]
    return args + ["--min-worker-port", str(base + 10), "--max-worker-port", str(base + PORTS_PER_NODE - 1)]


@pytest.fixture
def two_nodes(tmp_path, monkeypatch):
    """(address, temp dir, {"head": node id, "worker_node": node id}): a fresh 2-node cluster, 1 CPU each."""
    helpers = cluster_helpers
    for name, value in helpers.CLUSTER_ENV.items():
        monkeypatch.setenv(name, value)
    base = _free_block(2 * PORTS_PER_NODE)
    started = []
    temp_dir = tempfile.mkdtemp(prefix="spindist")  # short: Ray's socket paths must stay < 108 bytes
    try:
        head = ["--head", "--include-dashboard=false", "--port", str(base), "--num-cpus", "1",
                "--resources", json.dumps({"head": 1}), *_node_ports(base, head=True)]
        started.append(helpers._ray_start(head, tmp_path / "head.log", temp_dir))
        address = f"127.0.0.1:{base}"
        deadline = time.monotonic() + 120
        while subprocess.run([helpers.RAY, "health-check", "--address", address], capture_output=True,
                             env={**os.environ, **helpers.CLUSTER_ENV}).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            assert started[0].poll() is None, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        worker = ["--address", address, "--num-cpus", "1", "--resources", json.dumps({"worker_node": 1}),
                  *_node_ports(base + PORTS_PER_NODE, head=False)]
        started.append(helpers._ray_start(worker, tmp_path / "worker.log", temp_dir))
        yield address, temp_dir, _wait_for_nodes(address, temp_dir, tmp_path)
    finally:
        for process in reversed(started):
            helpers._stop(process)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not any(helpers._group_alive(process.pid) for process in started), "cluster processes left"


def _connect(address: str, temp_dir: str) -> None:
    """Join as a driver; the temp dir picks this cluster's node among other users' raylets here."""
    import ray

    ray.init(address=address, _node_ip_address="127.0.0.1", _temp_dir=temp_dir, log_to_driver=False,
             logging_level="ERROR")


def _wait_for_nodes(address: str, temp_dir: str, tmp_path) -> dict[str, str]:
    import ray

    _connect(address, temp_dir)
    try:
        deadline = time.monotonic() + 180
        while True:
            nodes = {name: node["NodeID"] for node in ray.nodes() if node["Alive"]
                     for name in ("head", "worker_node") if node["Resources"].get(name)}
            if len(nodes) == 2:
                return nodes
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.5)
    finally:
        ray.shutdown()


def _rank_on_node_two(store_path: str, remote_store, keys: list[str], threshold: float) -> dict:
    """What a rank on the second node does with its batches' fits (run there as a Ray task)."""
    from spin.distributed.remote_reads import RemoteFitReader, fit_reader_for, prefetch_fits

    reader = fit_reader_for(store_path, remote_store)
    batches = list(prefetch_fits(iter([collated_batch(keys[:3]), collated_batch(keys[3:])]), reader,
                                 threshold))
    fits = reader.read(keys)
    return {"remote": isinstance(reader, RemoteFitReader), "loss": fits["loss"], "present": fits["present"],
            "fit_supervised": sum(int(b["supervision"].from_fit.sum()) for b in batches),
            "lmdb_opened": mapped_files("data.mdb")}


def test_a_rank_on_the_second_node_reads_fits_without_opening_lmdb(two_nodes, tmp_path):
    import ray

    from fitting_workers.store_actor import open_store_writer

    address, temp_dir, nodes = two_nodes
    _connect(address, temp_dir)
    try:
        store_path = str(tmp_path / "fits.lmdb")
        writer = open_store_writer(store_path, node_id=nodes["head"])
        writer.declare_dataset("synth", len(KEYS))
        put_fits(writer, KEYS[:4], loss=np.array([10.0, 20.0, 30.0, 500.0]))  # written on node 1
        on_node_two = ray.remote(num_cpus=0, resources={"worker_node": 0.01})(_rank_on_node_two)
        local_modules = [sys.modules[__name__], sys.modules[collated_batch.__module__], rank_programs]
        for module in local_modules:  # Ray's workers cannot import the test folder: ship by value
            ray.cloudpickle.register_pickle_by_value(module)
        try:
            seen = ray.get(on_node_two.remote(store_path, writer, KEYS, 100.0), timeout=180)
        finally:
            for module in local_modules:
                ray.cloudpickle.unregister_pickle_by_value(module)
        assert seen["remote"] and not seen["lmdb_opened"]
        assert seen["present"].tolist() == [True] * 4 + [False] * 2
        assert np.allclose(seen["loss"][:4], [10, 20, 30, 500])
        assert seen["fit_supervised"] == 3  # fit supervision reaches the rank (500 is over the threshold)
        writer.kill()
    finally:
        ray.shutdown()  # the fixture then stops both nodes and checks that nothing is left


def test_real_trainer_on_two_nodes_supervises_the_remote_rank_without_lmdb(two_nodes, tmp_path, tiny_data):
    """Two ranks of the real Trainer, one per node (placement spread); the store, pre-filled with good
    fits, lives on rank 0's node; the other rank gets fit supervision through the writer actor."""
    from spin.distributed.launch import launch
    from store import FitsStore

    address, temp_dir, nodes = two_nodes
    store_path = tmp_path / "fits.lmdb"
    with FitsStore(store_path) as store:
        store.declare_dataset("synth", N_TRAIN_RANKS)
        put_fits(store, [f"synth/{i}" for i in range(N_TRAIN_RANKS)], loss=5.0)  # under the threshold
    log = tmp_path / "steps.jsonl"
    config = rank_config(tiny_data, tmp_path / "run", "async", **{
        "store": str(store_path), "distributed.placement": '"spread"', "rounds.num_rounds": 1,
        "fitting.ray_address": f'"{address}"', "rounds.drain_fits_s": 5})
    _connect(address, temp_dir)  # launch uses this driver's connection (it started no Ray of its own)
    ray_modules = [rank_programs]
    import ray

    for module in ray_modules:
        ray.cloudpickle.register_pickle_by_value(module)
    try:
        launch(config, tmp_path / "run", factory=rank_programs.ObservedTrainer(str(log)))
    finally:
        for module in ray_modules:
            ray.cloudpickle.unregister_pickle_by_value(module)
        ray.shutdown()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    by_rank = {r: [line for line in lines if line["rank"] == r] for r in (0, 1)}
    assert all(by_rank.values()), "a rank took no step"
    assert {by_rank[0][0]["node"], by_rank[1][0]["node"]} == set(nodes.values())  # one rank per node
    remote = [line for line in lines if line["node"] != line["writer_node"]]
    assert remote and all(line["reader"] == "RemoteFitReader" for line in remote)
    assert sum(line["fit_supervised"] for line in remote) > 0
    assert not any(line["lmdb_mapped"] for line in remote)  # never opened off the store's node
    local = [line for line in lines if line["node"] == line["writer_node"]]
    assert any(line["lmdb_mapped"] for line in local)  # the probe does see it where it is opened
