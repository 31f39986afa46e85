"""Programs the distributed tests run in spawned ranks (importable by the spawned interpreters)."""

from __future__ import annotations

from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from spin.distributed.ddp import unwrap_model, wrap_model
from spin.training.sampler import ResumableSampler

SEED = 7


def tiny_net() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def tiny_data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(n, 6, generator=generator), torch.randn(n, 3, generator=generator)


def regressor(mean_params_path: str) -> nn.Module:
    from spin.body import load_mean_params
    from spin.models import build_regressor
    from spin.models.regressor import ModelConfig

    torch.manual_seed(SEED)
    model = build_regressor(ModelConfig(backbone="resnet18", img_res=32, hidden=32, iterations=1),
                            load_mean_params(mean_params_path))
    return model.eval()  # frozen BN statistics and no dropout: per-sample outputs, comparable batches


def regressor_data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(n, 3, 32, 32, generator=generator), torch.randn(n, 24 * 9 + 13, generator=generator)


def regressor_output(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    out = model(images)
    return torch.cat([out.rotmat.flatten(1), out.betas, out.cam], dim=1)  # every head in the loss


def batches(n: int, per_rank: int, steps: int, rank: int, world: int) -> list[list[int]]:
    """Dataset indices of each step's batch on `rank` (the trainer's sampler)."""
    sampler = iter(ResumableSampler(n, seed=SEED, rank=rank, world_size=world))
    return [[next(sampler)[0] for _ in range(per_rank)] for _ in range(steps)]


def train(model: nn.Module, forward, inputs: torch.Tensor, targets: torch.Tensor,
          steps: list[list[int]]) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for indices in steps:
        loss = nn.functional.mse_loss(forward(model, inputs[indices]), targets[indices])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def ddp_rank(rank: int, world: int, init: str, kind: str, per_rank: int, steps: int, out: str,
             mean_params: str = "") -> None:
    """One rank: join the gloo group, train `kind` ("tiny" or "regressor") with DDP, save weights."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        if kind == "tiny":
            model, (inputs, targets), forward = tiny_net(), tiny_data(), lambda m, x: m(x)
        else:
            model, (inputs, targets) = regressor(mean_params), regressor_data()
            forward = regressor_output
        ddp = wrap_model(model, torch.device("cpu"))
        assert ddp is not model, "no DDP wrapper with a 2-rank group"
        plan = batches(len(inputs), per_rank, steps, rank, world)
        train(ddp, forward, inputs, targets, plan)
        torch.save({"state": unwrap_model(ddp).state_dict(), "indices": plan}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


class ToyTrainer:
    """The Trainer's contract for `spin.distributed.launch`, on the tiny net: DDP on the rank group,
    rank 0 writes `last.pt` after every step, every rank restores from it on resume.

    config: {"steps", "per_rank", "die": {"rank", "step", "marker"} or None}. The rank named in
    `die` kills its own process (SIGKILL: no cleanup) once, at that step, leaving `marker`.
    """

    def __init__(self, config: dict, run_dir, resume: bool = False, rank: int = 0, world_size: int = 1):
        import os
        from pathlib import Path

        torch.set_num_threads(1)
        self.config, self.run_dir, self.rank, self.world = config, Path(run_dir), rank, world_size
        self.model = tiny_net()
        self.ddp = wrap_model(self.model, torch.device("cpu"))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-2)
        self.step = 0
        if resume:
            state = torch.load(self.run_dir / "last.pt")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step = state["step"]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / f"starts_rank{rank}.txt", "a") as log:
            log.write(f"{self.step} {os.getpid()}\n")

    def train(self) -> list:
        import os
        import signal

        inputs, targets = tiny_data()
        steps = self.config["steps"]
        plan = batches(len(inputs), self.config["per_rank"], steps, self.rank, self.world)
        die = self.config.get("die")
        while self.step < steps:
            dies_now = die and self.rank == die["rank"] and self.step == die["step"]
            if dies_now and not os.path.exists(die["marker"]):
                open(die["marker"], "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            indices = plan[self.step]
            loss = nn.functional.mse_loss(self.ddp(inputs[indices]), targets[indices])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.step += 1
            if self.rank == 0:
                tmp = self.run_dir / "last.pt.tmp"
                torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                            "step": self.step}, tmp)
                os.replace(tmp, self.run_dir / "last.pt")
        return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def collectives_rank(rank: int, world: int, init: str, out: str) -> None:
    """Gather and sum helpers across a gloo group; results saved per rank."""
    from spin.distributed.ddp import all_gather_objects, barrier, sum_across_ranks

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world,
                            timeout=timedelta(seconds=120))
    try:
        gathered = all_gather_objects({"rank": rank, "rng": torch.random.get_rng_state()[:4].tolist()})
        sums = sum_across_ranks({"samples": 4.0 + rank, "supervised_fit": float(rank)})
        from spin.distributed.trainer_hooks import round_totals

        totals = round_totals({"batches": 2 + rank, "loss/total": 0.5 * rank, "steps_time": float(rank)})
        barrier()
        torch.save({"gathered": gathered, "sums": sums, "totals": totals}, f"{out}/collectives{rank}.pt")
    finally:
        dist.destroy_process_group()


class KillingTrainer:
    """The real Trainer; rank `die_rank` SIGKILLs its own process once after step `die_step`
    (leaving `marker`), as a crashed node would. A factory for `launch`."""

    def __init__(self, die_rank: int, die_step: int, marker: str, starts: str):
        self.die_rank, self.die_step, self.marker, self.starts = die_rank, die_step, marker, starts

    def __call__(self, config, run_dir, resume=False, rank=0, world_size=1):
        import os
        import signal

        from spin.training.trainer import Trainer

        def on_step(trainer) -> None:
            if rank == self.die_rank and trainer.step == self.die_step and not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)

        trainer = Trainer(config, run_dir, resume=resume, on_step=on_step, rank=rank, world_size=world_size)
        with open(self.starts, "a") as log:
            log.write(f"{rank} {trainer.step}\n")
        return trainer


def mapped_files(name: str) -> list[str]:
    """Files named `name` that this process has open or memory-mapped (LMDB maps data.mdb)."""
    import os
    from pathlib import Path

    hits = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith(name):
            hits.append(target)
    hits += [line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
             if line.endswith(name)]
    return hits


class ObservedTrainer:
    """The real Trainer; after every step each rank appends what it saw to `log` (one JSON line):
    its rank and Ray node, how many of its batch's samples fits supervised, its reader's kind, and
    whether this process has the LMDB file open or mapped. A factory for `launch`."""

    def __init__(self, log: str):
        self.log = log

    def __call__(self, config, run_dir, resume=False, rank=0, world_size=1):
        import json

        import ray

        from spin.training.trainer import Trainer

        node = ray.get_runtime_context().get_node_id()

        def on_step(trainer) -> None:
            reader = getattr(trainer.fitting, "prefetch_reader", None) or trainer.collate.reader
            line = {"rank": rank, "node": node, "step": trainer.step,
                    "fit_supervised": int(trainer.last_supervision.from_fit.sum()),
                    "reader": type(reader).__name__, "lmdb_mapped": bool(mapped_files("data.mdb")),
                    "writer_node": ray.get(trainer.fitting.writer.handle.node_id.remote(), timeout=60)}
            with open(self.log, "a") as out:
                out.write(json.dumps(line) + "\n")

        return Trainer(config, run_dir, resume=resume, on_step=on_step, rank=rank, world_size=world_size)
