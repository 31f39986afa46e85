"""One entry for 1 or N trainer ranks: `launch(config, run_dir, resume)`.

`distributed.num_workers` 1: the single-process trainer, as before (no Ray Train, no process
group). More: Ray Train's `TorchTrainer` starts the ranks on the cluster the fitting actors use
(`fitting.ray_address`; a local Ray otherwise), sets up the process group (nccl on GPUs, gloo on
CPUs) and restarts the whole rank group up to `distributed.max_failures` times when a rank dies;
every restarted rank resumes from `last.pt`. With `distributed.launcher: torchrun` the ranks are
the processes torchrun started (`torchrun --nproc-per-node N -m spin.distributed.launch ...`),
and torchrun's `--max-restarts` plays the engine's part.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spin.distributed.config import DistributedConfig
from spin.distributed.ddp import check_world_size, destroy_process_group, init_from_env, rank_from_env
from spin.errors import UserError

LAST_CHECKPOINT = "last.pt"  # the trainer's name for it (spin.training.trainer.LAST_CHECKPOINT)

TrainerFactory = Callable[..., Any]
"""`factory(config, run_dir, resume=bool, rank=int, world_size=int)` → a context manager with
`.train()`; `spin.training.trainer.Trainer` by default."""


def distributed_config(config: Any) -> DistributedConfig:
    """The run's `distributed:` section (the default, one rank, for configs without it)."""
    return getattr(config, "distributed", None) or DistributedConfig()


def _default_factory() -> TrainerFactory:
    from spin.training.trainer import Trainer

    return Trainer


def should_resume(run_dir: str | Path, resume: bool) -> bool:
    """A rank resumes when asked to, or when the engine restarted it after `last.pt` was written."""
    return resume or (Path(run_dir) / LAST_CHECKPOINT).is_file()


def check_fresh_run_dir(run_dir: str | Path, resume: bool) -> None:
    """Refuse to start a new run over an old one before any rank starts (a restarted rank would
    otherwise take the old `last.pt` for its own)."""
    run_dir = Path(run_dir)
    last = run_dir / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise UserError(f"Run folder {run_dir} has no {LAST_CHECKPOINT} to resume from; "
                        "start it with `spin train --run-dir` first, or check the path.")
    if not resume and (last.is_file() or any(run_dir.glob("round_*"))):
        raise UserError(f"Run folder {run_dir} already holds a run; continue it with "
                        f"`spin train --resume {run_dir}` or choose another --run-dir.")


def check_resume_world_size(run_dir: str | Path, world_size: int) -> None:
    """Refuse `--resume` with another world size than the one that wrote `last.pt` before any rank
    starts (the ranks check it too, but only after the cluster has started them, and the engine
    would restart them on the error up to `distributed.max_failures` times)."""
    import torch

    last = Path(run_dir) / LAST_CHECKPOINT
    try:  # mmap: only the small entries are read, not the weights
        saved = torch.load(last, map_location="cpu", mmap=True, weights_only=False).get("world_size")
    except Exception:  # noqa: BLE001 - an unreadable file: the ranks' load_checkpoint says so in one sentence
        return
    check_world_size(saved, world_size, str(last))


def run_rank(config: Any, run_dir: str | Path, resume: bool, rank: int, world_size: int,
             factory: TrainerFactory | None = None) -> list[dict[str, Any]]:
    """Build this rank's trainer and train; the process group is already set up."""
    factory = factory or _default_factory()
    with factory(config, run_dir, resume=should_resume(run_dir, resume), rank=rank,
                 world_size=world_size) as trainer:
        return trainer.train()


def _ray_rank_main(loop_config: dict[str, Any]) -> None:
    """Ray Train's per-worker function."""
    import ray.train
    import torch

    context = ray.train.get_context()
    if torch.cuda.is_available():
        from ray.train.torch import get_device

        torch.cuda.set_device(get_device())  # the trainer's "cuda" is then this rank's GPU
    run_rank(loop_config["config"], loop_config["run_dir"], loop_config["resume"],
             rank=context.get_world_rank(), world_size=context.get_world_size(),
             factory=loop_config["factory"])


def launch(config: Any, run_dir: str | Path, resume: bool = False, factory: TrainerFactory | None = None,
           distributed: DistributedConfig | None = None) -> list[dict[str, Any]]:
    """Train `config` in `run_dir` on 1 or `distributed.num_workers` ranks; returns the metrics of
    the rounds that exist in `run_dir` when the ranks finish (N ranks) or of those finished now (1)."""
    dist_cfg = distributed or distributed_config(config)
    if dist_cfg.launcher == "torchrun" and rank_from_env().world_size > 1:
        return _torchrun_rank(config, run_dir, resume, dist_cfg, factory)
    if not dist_cfg.enabled:
        return run_rank(config, run_dir, resume, rank=0, world_size=1, factory=factory)
    if dist_cfg.launcher == "torchrun":
        raise UserError(f"Config distributed.launcher is torchrun but this process was not started by "
                        f"torchrun; run `torchrun --nproc-per-node {dist_cfg.num_workers} -m "
                        "spin.distributed.launch CONFIG RUN_DIR`, or set distributed.launcher=ray.")
    check_fresh_run_dir(run_dir, resume)
    if resume:
        check_resume_world_size(run_dir, dist_cfg.num_workers)
    return _ray_train(config, Path(run_dir), resume, dist_cfg, factory or _default_factory())


def _ray_train(config: Any, run_dir: Path, resume: bool, dist_cfg: DistributedConfig,
               factory: TrainerFactory) -> list[dict[str, Any]]:
    from ray.train import FailureConfig, RunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from fitting_workers.runtime import start_ray, stop_ray
    from spin.distributed.placement import check_budget, cluster_nodes, scaling_config
    from spin.training.rounds import METRICS_FILE, load_rounds

    fitting = getattr(config, "fitting", None)
    started = start_ray(address=getattr(fitting, "ray_address", None))
    try:
        check_budget(dist_cfg, fitting, cluster_nodes())
        run_dir.mkdir(parents=True, exist_ok=True)
        storage = dist_cfg.storage_path or str((run_dir / "ray_train").resolve())
        trainer = TorchTrainer(
            _ray_rank_main,
            train_loop_config={"config": config, "run_dir": str(run_dir.resolve()), "resume": resume,
                               "factory": factory},
            torch_config=TorchConfig(backend=dist_cfg.resolved_backend("cuda" if dist_cfg.use_gpu else "cpu"),
                                     timeout_s=int(dist_cfg.timeout_s)),
            scaling_config=scaling_config(dist_cfg),
            run_config=RunConfig(name=getattr(config, "name", "spin"), storage_path=storage,
                                 failure_config=FailureConfig(max_failures=dist_cfg.max_failures)),
        )
        try:
            trainer.fit()
        except Exception as error:  # Ray Train wraps the rank's exception; a user mistake stays one line
            cause = _user_error_in(error)
            if cause is not None:
                raise cause from None
            raise
        return load_rounds(run_dir) if any(run_dir.glob(f"round_*/{METRICS_FILE}")) else []
    finally:
        if started:
            stop_ray()


def _user_error_in(error: BaseException) -> UserError | None:
    """The UserError a rank raised, found in Ray Train's wrapped exception, or None."""
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        item = stack.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        wrapped = getattr(item, "cause", None)
        if isinstance(wrapped, BaseException):  # a Ray task error: the rank's own exception is inside
            stack.append(wrapped)
            continue
        if isinstance(item, UserError):
            return item
        if isinstance(item, BaseException):
            stack += [item.__cause__, item.__context__]
            stack += list(getattr(item, "worker_failures", {}).values())
    return None


def _torchrun_rank(config: Any, run_dir: str | Path, resume: bool, dist_cfg: DistributedConfig,
                   factory: TrainerFactory | None) -> list[dict[str, Any]]:
    import os

    import torch

    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        check_fresh_run_dir(run_dir, resume)  # torchrun's restarts resume from last.pt
    device = "cuda" if getattr(config, "device", "cpu") != "cpu" and torch.cuda.is_available() else "cpu"
    info = init_from_env(dist_cfg.resolved_backend(device), dist_cfg.timeout_s)
    try:
        return run_rank(config, run_dir, resume, rank=info.rank, world_size=info.world_size, factory=factory)
    finally:
        destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    """torchrun entry: `torchrun --nproc-per-node N -m spin.distributed.launch CONFIG RUN_DIR [k=v ...]`."""
    parser = argparse.ArgumentParser(prog="python -m spin.distributed.launch", description=main.__doc__)
    parser.add_argument("config", type=Path, help="YAML config (a TrainConfig)")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    args = parser.parse_args(argv)
    from spin.config import TrainConfig
    from spin.config_loading import load_config

    config = load_config(TrainConfig, args.config, args.overrides)
    launch(config, args.run_dir, resume=args.resume,
           distributed=DistributedConfig(**{**vars(distributed_config(config)), "launcher": "torchrun"}))


if __name__ == "__main__":
    main()
