"""The `distributed:` config section: how many data-parallel trainer ranks run, and where.

Effective batch: every rank draws `data.batch_size` samples per step and DDP averages the ranks'
gradients, so one optimiser step sees `data.batch_size × num_workers` samples. `optim.lr` is used
as given (no automatic scaling): the loss is a per-sample mean, so the averaged gradient has the
same scale as a single-process run with the effective batch. Keep the paper's global batch (64)
by setting `data.batch_size = 64 / num_workers`, or raise `optim.lr` yourself (linear scaling,
with warm-up) when you grow the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from spin.errors import UserError

BACKENDS = ("auto", "nccl", "gloo")
PLACEMENTS = ("pack", "spread")
LAUNCHERS = ("ray", "torchrun")


@dataclass
class DistributedConfig:
    """Data-parallel ranks of one run.

    `num_workers`: ranks (one per GPU); 1 = today's single process, no Ray Train, no process group.
    `gpus_per_worker` / `cpus_per_worker`: Ray resources each rank holds (`cpus_per_worker` should
    cover the rank's data-loader workers: `data.num_workers + 1`). `backend`: `auto` = nccl when the
    ranks hold GPUs, gloo otherwise. `sync_batchnorm`: convert BatchNorm layers to SyncBatchNorm
    (statistics over the global batch; costs one all-reduce per BN layer). `placement`: `pack` puts
    ranks on as few nodes as possible (fast all-reduce), `spread` one per node where possible.
    `max_failures`: how often the engine restarts the rank group after a rank dies (each restart
    resumes from `last.pt`); 0 = fail the run on the first death. `launcher`: `ray` (Ray Train's
    TorchTrainer) or `torchrun` (the process group comes from torchrun's environment variables).
    `storage_path`: where Ray Train keeps its run records (None = `<run_dir>/ray_train`; on several
    nodes it must be a shared filesystem; checkpoints stay the trainer's own `last.pt`).
    """

    num_workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    backend: str = "auto"
    sync_batchnorm: bool = False
    placement: str = "pack"
    max_failures: int = 2
    launcher: str = "ray"
    storage_path: str | None = None
    timeout_s: float = 1800.0  # process-group operations (a rank that hangs ends the group)

    def __post_init__(self) -> None:
        checks = [
            (self.num_workers >= 1, "num_workers", "1 or more"),
            (self.gpus_per_worker >= 0, "gpus_per_worker", "0 or more"),
            (self.cpus_per_worker >= 0, "cpus_per_worker", "0 or more"),
            (self.max_failures >= 0, "max_failures", "0 or more"),
            (self.timeout_s > 0, "timeout_s", "above 0"),
            (self.backend in BACKENDS, "backend", " or ".join(BACKENDS)),
            (self.placement in PLACEMENTS, "placement", " or ".join(PLACEMENTS)),
            (self.launcher in LAUNCHERS, "launcher", " or ".join(LAUNCHERS)),
        ]
        for ok, key, fix in checks:
            if not ok:
                raise UserError(f"Config key distributed.{key} is {getattr(self, key)!r}; set it to {fix}.")
        if self.backend == "nccl" and self.gpus_per_worker <= 0 and self.launcher == "ray":
            raise UserError("Config distributed.backend is nccl but distributed.gpus_per_worker is 0; "
                            "give each rank a GPU (gpus_per_worker=1) or use backend=gloo.")

    @property
    def enabled(self) -> bool:
        """Several ranks: DDP, a process group, rank-0-only side effects."""
        return self.num_workers > 1

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def resolved_backend(self, device_type: str) -> str:
        """The process-group backend for ranks on `device_type` ("cuda" or "cpu")."""
        if self.backend != "auto":
            return self.backend
        return "nccl" if device_type == "cuda" else "gloo"

    def effective_batch(self, per_rank_batch: int) -> int:
        """Samples per optimiser step over all ranks."""
        return per_rank_batch * self.num_workers
