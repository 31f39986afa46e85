"""The `distributed:` section and the cluster budget: defaults, bad values, placement checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fitting_workers.config import FittingConfig
from spin.config_loading import load_config
from spin.distributed.config import DistributedConfig
from spin.distributed.placement import actors_for_rank, check_budget, demand, rank_resources
from spin.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_default_is_the_single_process_trainer():
    config = DistributedConfig()
    assert not config.enabled and config.effective_batch(64) == 64
    assert config.resolved_backend("cpu") == "gloo" and config.resolved_backend("cuda") == "nccl"
    assert DistributedConfig(backend="gloo").resolved_backend("cuda") == "gloo"


@pytest.mark.parametrize("override, key", [("num_workers=0", "num_workers"), ("placement=ring", "placement"),
                                           ("backend=mpi", "backend"), ("max_failures=-1", "max_failures")])
def test_bad_values_name_the_key(override, key):
    with pytest.raises(UserError, match=f"distributed.{key} is"):
        load_config(DistributedConfig, None, [override])


def test_nccl_without_gpus_is_refused():
    with pytest.raises(UserError, match="gpus_per_worker is 0"):
        DistributedConfig(num_workers=2, backend="nccl")


def test_the_cluster_config_section_loads():
    """configs/cluster.yaml's `distributed:` section is a live TrainConfig field."""
    section = yaml.safe_load((ROOT / "configs" / "cluster.yaml").read_text())["distributed"]
    config = DistributedConfig(**section)
    assert config.num_workers == 8 and config.use_gpu and config.effective_batch(8) == 64


def test_budget_counts_ranks_and_fitting_actors():
    ranks = DistributedConfig(num_workers=4, gpus_per_worker=1, cpus_per_worker=6)
    fitting = FittingConfig(num_actors=4, cpus_per_actor=4)
    node = {"CPU": 32.0, "GPU": 4.0}
    need = check_budget(ranks, fitting, [node, node])
    assert (need.cpus, need.gpus) == (40, 4)
    assert rank_resources(ranks) == {"CPU": 6.0, "GPU": 1.0}
    assert demand(ranks, FittingConfig(mode="off", num_actors=4)).cpus == 24  # no actors without async


@pytest.mark.parametrize("nodes, message", [
    ([{"CPU": 32.0, "GPU": 2.0}], "needs 4 GPUs"),
    ([{"CPU": 30.0, "GPU": 4.0}], "needs 40 CPUs"),
    ([{"CPU": 5.0, "GPU": 4.0}] * 10, "No Ray node has 6 CPUs"),
])
def test_budget_that_cannot_be_placed_is_one_sentence(nodes, message):
    ranks = DistributedConfig(num_workers=4, gpus_per_worker=1, cpus_per_worker=6)
    with pytest.raises(UserError, match=message):
        check_budget(ranks, FittingConfig(num_actors=4, cpus_per_actor=4), nodes)


@given(total=st.integers(1, 64), world=st.integers(1, 16))
def test_fitting_actors_are_split_over_the_ranks(total, world):
    split = [actors_for_rank(total, rank, world) for rank in range(world)]
    assert sum(split) == max(total, world) and min(split) >= 1 and max(split) - min(split) <= 1
