"""Where trainer ranks and fitting actors go: Ray Train's scaling config and the cluster budget.

Ranks hold GPUs (or, on CPU runs, CPUs); fitting actors hold CPUs (or GPU shares when
`fitting.gpus_per_actor` > 0). Ray's resource accounting already keeps a node's declared cores
from being oversubscribed; `check_budget` turns "the run would wait forever for resources" into
one sentence before anything starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from spin.distributed.config import DistributedConfig
from spin.errors import UserError


@dataclass(frozen=True)
class Demand:
    """What a run asks the cluster for: every rank plus every fitting actor."""

    cpus: float
    gpus: float
    rank_cpus: float
    rank_gpus: float


def rank_resources(config: DistributedConfig) -> dict[str, float]:
    """Ray resources one rank holds (Ray Train's `resources_per_worker`)."""
    resources = {"CPU": float(config.cpus_per_worker)}
    if config.gpus_per_worker > 0:
        resources["GPU"] = float(config.gpus_per_worker)
    return resources


def scaling_config(config: DistributedConfig) -> Any:
    """Ray Train's ScalingConfig for the ranks of `config`."""
    from ray.train import ScalingConfig

    return ScalingConfig(num_workers=config.num_workers, use_gpu=config.use_gpu,
                         resources_per_worker=rank_resources(config),
                         placement_strategy=config.placement.upper())


def actors_for_rank(total: int, rank: int, world_size: int) -> int:
    """Fitting actors rank `rank` starts for its own pool: `total` split as evenly as possible
    (lower ranks take the remainder), at least one per rank so that every rank can publish."""
    return max(1, total // world_size + (1 if rank < total % world_size else 0))


def demand(config: DistributedConfig, fitting: Any | None) -> Demand:
    """Total CPUs/GPUs of the ranks and of the fitting actors (`fitting`: a FittingConfig; actors
    only count in async mode, the only mode that starts them)."""
    cpus = config.num_workers * config.cpus_per_worker
    gpus = config.num_workers * config.gpus_per_worker
    if fitting is not None and fitting.mode == "async":
        actors = sum(actors_for_rank(fitting.num_actors, r, config.num_workers)
                     for r in range(config.num_workers))
        cpus += actors * fitting.cpus_per_actor
        gpus += actors * fitting.gpus_per_actor
    return Demand(cpus, gpus, config.cpus_per_worker, config.gpus_per_worker)


def check_budget(config: DistributedConfig, fitting: Any | None,
                 nodes: Sequence[Mapping[str, float]]) -> Demand:
    """Raise a UserError when the run cannot be placed on `nodes` (each node's total resources,
    as `ray.nodes()[i]["Resources"]`): too few CPUs/GPUs overall, or a rank larger than any node."""
    need = demand(config, fitting)
    have_cpus = sum(float(n.get("CPU", 0)) for n in nodes)
    have_gpus = sum(float(n.get("GPU", 0)) for n in nodes)
    if need.gpus > have_gpus + 1e-9:
        raise UserError(f"The run needs {need.gpus:g} GPUs (distributed.num_workers × gpus_per_worker plus "
                        f"fitting.num_actors × gpus_per_actor) but the Ray cluster has {have_gpus:g}; "
                        "lower those keys or add GPU nodes.")
    if need.cpus > have_cpus + 1e-9:
        raise UserError(f"The run needs {need.cpus:g} CPUs (distributed.num_workers × cpus_per_worker plus "
                        f"fitting.num_actors × cpus_per_actor) but the Ray cluster has {have_cpus:g}; "
                        "lower those keys or add nodes.")
    fits_a_node = any(float(n.get("CPU", 0)) >= need.rank_cpus - 1e-9 and
                      float(n.get("GPU", 0)) >= need.rank_gpus - 1e-9 for n in nodes)
    if not fits_a_node:
        raise UserError(f"No Ray node has {need.rank_cpus:g} CPUs and {need.rank_gpus:g} GPUs for one rank; "
                        "lower distributed.cpus_per_worker / gpus_per_worker.")
    return need


def cluster_nodes() -> list[dict[str, float]]:
    """Total resources of every live node of the connected Ray cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
