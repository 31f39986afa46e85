"""The SPIN training loop: rounds of steps with fitting off, inside the step (sync) or beside it (async).

Per step: images → regressor → body model → SPIN's losses against the batch's supervision
(best-so-far store fits moved into the augmented frame, ground truth overriding). `sync` runs
SMPLify on the batch and updates the store before the losses, as original SPIN does; `async`
publishes the canonical-frame predictions to the Ray fitting actors and goes on.

At start-up the store's unscored (imported static) fits of the training datasets are scored, so
they supervise from the first step; `model.init_checkpoint` starts from a checkpoint's weights.
Per round: checkpoint, store snapshot, evaluation on the test split, fit statistics and coverage,
mesh overlays, all in `<run_dir>/round_XXX/`. `last.pt` (every `rounds.checkpoint_every` steps
and at each round end) holds everything `--resume` needs to continue exactly: model, optimiser,
scheduler, AMP scaler, step, RNG states, the sampler position (= steps × batch size) and the
wandb run id.

Data-parallel: with `rank`/`world_size` from `spin.distributed.launch` (a process group already
set up), the training forward runs through DDP, the sampler shards draws by rank, and only rank 0
logs, evaluates and writes checkpoints (`spin.distributed.trainer_hooks`). One rank: no group.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from spin.body import BodyModel, load_mean_params, resolve_body_files
from spin.camera import CropCamera
from spin.config import TrainConfig
from spin.config_loading import config_to_yaml
from spin.distributed import trainer_hooks as ranks
from spin.errors import UserError
from spin.evaluation.evaluate import evaluate_model
from spin.models import build_regressor, load_regressor
from spin.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from spin.training.data_setup import TrainData, build_data
from spin.training.device import seed_everything, select_device
from spin.training.extensions import (
    add_extension_terms,
    build_extensions,
    extension_metrics,
    extensions_state,
    load_extensions_state,
    needs_iterations,
)
from spin.training.fitting import Fitting, close_all
from spin.training.round_images import round_overlays
from spin.training.rounds import (
    METRICS_FILE,
    coverage_base,
    fit_coverage,
    fit_truth_metrics,
    round_dir,
    round_finished,
    train_fit_stats,
    write_metrics,
)
from spin.training.run_logger import RunLogger
from spin.training.sampler import ResumableSampler, SeededDraws
from spin.training.schedule import build_scheduler
from spin.training.static_fits import score_store_at_start
from spin.training.step import loss_terms, predict

LAST_CHECKPOINT = "last.pt"
CONFIG_FILE = "config.yaml"
STORE_DIR = "fits.lmdb"
FIT_LOG_KEYS = ("fits_per_s", "accepted_frac", "improved_frac", "queue_depth", "staleness_steps", "dropped",
                "accepted", "improved", "fitted", "failed", "restarts")
LOSS_KEYS = ("total", "keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "vertices")


def default_run_dir(config: TrainConfig) -> Path:
    return Path(config.run_dir) if config.run_dir else Path("runs") / config.name


class Trainer:
    """One training run in `run_dir`; `resume=True` continues it from `last.pt`.

    `on_step(trainer)` is called after every optimiser step (progress bars, tests);
    `on_setup(description, done, total)` during long start-up work (scoring imported fits; without
    it that work shows its own progress bar).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, resume: bool = False, on_step=None,
                 rank: int = 0, world_size: int = 1, on_setup=None):
        self.started = time.monotonic()
        self.config = config
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.on_step = on_step
        self.on_setup = on_setup
        self.device = select_device(config.device)
        self.threshold = config.fitting.smplify.threshold
        # The crop camera SMPLify fits in, so predictions and fits project alike.
        self.camera = CropCamera(config.fitting.smplify.focal_length, config.fitting.smplify.img_res)
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.optim.amp]
        if self.device.type != "cuda":
            self.amp_dtype = None  # CPU runs float32
        self.channels_last = config.optim.channels_last and self.device.type == "cuda"
        if config.torch_threads > 0:
            torch.set_num_threads(config.torch_threads)
        self._closers: list[Any] = []
        self.store_path = Path(config.store) if config.store else self.run_dir / STORE_DIR
        state = self._start_or_resume(resume)
        seed_everything(ranks.rank_seed(config.seed, rank))

        self.body_files = resolve_body_files(config.body.body_model, config.body.joint_regressor_extra,
                                             config.body.prior, config.body.mean_params)
        self.body = BodyModel.from_files(self.body_files).to(self.device)
        self.data: TrainData = build_data(config.data, config.model.img_res, self.body, self.body_files)
        mean_params = load_mean_params(self.body_files.mean_params)
        self.model = build_regressor(config.model, mean_params).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        # The training forward's module (DDP on N ranks); self.model, plain, for eval and checkpoints.
        self.train_model = ranks.training_module(self.model, self.device, config.distributed.sync_batchnorm,
                                                 world_size)
        # Fused Adam: one kernel over all parameters; on 1 CPU thread the per-tensor loop took
        # 0.17-0.9 s per step for ResNet-18 (~13% of a 48-px step), fused 0.04-0.09 s (same update).
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr,
                                          weight_decay=config.optim.weight_decay,
                                          fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = build_scheduler(self.optimizer, config.optim, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.extensions = build_extensions(config, self.device)  # extra loss terms (HMR's prior)
        self.step = 0
        self.round_start_count = 0
        self.round_acc = self._empty_round_acc()
        self.wandb_id: str | None = None
        self.elapsed_before = 0.0
        self.stop_signal: int | None = None  # set by request_stop
        if state is not None:
            self._load_state(state)
        elif config.model.init_checkpoint:
            self._init_weights(config.model.init_checkpoint)
        self._fit_base: dict[str, int] = {}  # fitting counts at the round's start (this process)

        try:
            self.scoring = self._score_stored_fits()
            self.fitting: Fitting = ranks.build_fitting(config, self.store_path, self.data.sizes, self.body,
                                                        self.body_files, self.device, rank, world_size)
            self._closers.append(self.fitting.close)
            self.store = self.fitting.store  # local reads: statistics, counters, snapshots
            self.collate = self.fitting.collate
            self.loader = self._train_loader()
            self.test_loader = DataLoader(self.data.test, batch_size=config.rounds.eval_batch_size,
                                          shuffle=False, num_workers=min(config.data.num_workers, 2),
                                          generator=torch.Generator(), pin_memory=self._pin)
            self.logger = RunLogger(
                enabled=config.wandb.enabled and self.is_main, run_dir=self.run_dir,
                project=config.wandb.project, name=config.name, config=asdict(config), run_id=self.wandb_id,
                mode=config.wandb.mode, entity=config.wandb.entity, tags=list(config.wandb.tags))
            self.wandb_id = self.logger.run_id
            self._closers.append(self.logger.finish)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------------------- setup

    @property
    def _pin(self) -> bool:
        return self.config.data.pin_memory and self.device.type == "cuda"

    def _start_or_resume(self, resume: bool) -> dict[str, Any] | None:
        last = self.run_dir / LAST_CHECKPOINT
        if resume:
            if not last.is_file():
                raise UserError(f"Run folder {self.run_dir} has no {LAST_CHECKPOINT} to resume from; "
                                "start it with `spin train --run-dir` first, or check the path.")
            return load_checkpoint(last)
        if last.is_file() or any(self.run_dir.glob("round_*")):
            raise UserError(f"Run folder {self.run_dir} already holds a run; continue it with "
                            f"`spin train --resume {self.run_dir}` or choose another --run-dir.")
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / CONFIG_FILE).write_text(config_to_yaml(self.config))
        return None

    def _init_weights(self, path: str) -> None:
        """`model.init_checkpoint`: fine-tune from this project's or SPIN's checkpoint (weights only)."""
        loaded = load_regressor(path, self.config.model)
        self.model.load_state_dict(loaded.state_dict())

    def _score_stored_fits(self) -> dict[str, Any]:
        """Score the store's unscored (imported) fits of the training datasets, so they supervise now."""
        if not self.is_main:
            return {}
        progress = None
        if self.on_setup is not None:
            def progress(done: int, total: int) -> None:
                self.on_setup("scoring imported fits", done, total)
        summary = score_store_at_start(self.store_path, self.data.sizes, self.data.keypoints(), self.body,
                                       self.config.fitting.smplify, progress)
        return summary.as_dict()

    def _train_loader(self) -> DataLoader:
        cfg = self.config.data
        sampler = ResumableSampler(len(self.data.train), seed=self.config.seed,
                                   start=self.step * cfg.batch_size, rank=self.rank,
                                   world_size=self.world_size, weights=self.data.weights)
        # The generator only feeds the workers' base seed (unused: draws carry their own seeds),
        # but keeps the loader from drawing on the global torch RNG, which the checkpoint restores.
        return DataLoader(SeededDraws(self.data.train), batch_size=cfg.batch_size, sampler=sampler,
                          num_workers=cfg.num_workers, collate_fn=self.collate, pin_memory=self._pin,
                          drop_last=True, persistent_workers=False, generator=torch.Generator(),
                          prefetch_factor=2 if cfg.num_workers > 0 else None)

    # ----------------------------------------------------------------------------- state

    @staticmethod
    def _empty_round_acc() -> dict[str, float]:
        acc = {f"loss/{k}": 0.0 for k in LOSS_KEYS}
        acc.update(batches=0, batches_with_fit=0, samples=0, supervised_fit=0, supervised_gt=0,
                   steps_time=0.0)
        return acc

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rng_state(),
            "sampler_position": self.step * self.config.data.batch_size,
            "wandb_id": self.wandb_id,
            "round_start_count": self.round_start_count,
            "round_acc": dict(self.round_acc),
            "elapsed_s": self.elapsed_s,
            "config": asdict(self.config),
            **ranks.rank_state(rng_state(), self.round_acc, self.world_size),  # collective
            "extensions": extensions_state(self.extensions),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.wandb_id = state.get("wandb_id")
        self.round_start_count = int(state.get("round_start_count", 0))
        self.round_acc = dict(state.get("round_acc") or self._empty_round_acc())
        self.elapsed_before = float(state.get("elapsed_s", 0.0))
        load_extensions_state(self.extensions, state.get("extensions", {}))
        last = str(self.run_dir / LAST_CHECKPOINT)
        rng, acc = ranks.restore_rank_state(state, self.rank, self.world_size, last)
        self.round_acc = acc or self.round_acc
        set_rng_state(rng)

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def save_last(self) -> None:
        state = self.state_dict()  # on every rank: it gathers the ranks' RNG states
        if self.is_main:
            save_checkpoint(self.run_dir / LAST_CHECKPOINT, state)

    # ----------------------------------------------------------------------------- loop

    @property
    def total_steps(self) -> int:
        return self.config.rounds.num_rounds * self.config.rounds.steps_per_round

    @property
    def current_round(self) -> int:
        """1-based round of the next step."""
        return self.step // self.config.rounds.steps_per_round + 1

    @property
    def current_round_done(self) -> int:
        """1-based round of the last step taken (for progress display)."""
        return max(0, self.step - 1) // self.config.rounds.steps_per_round + 1

    def progress_info(self) -> str:
        acc = self.round_acc
        loss = acc["loss/total"] / max(1, acc["batches"])
        supervised = acc["supervised_fit"] / max(1, acc["samples"])
        return f"loss {loss:.2f}  fit-supervised {supervised:.0%}"

    def train(self) -> list[dict[str, Any]]:
        """Run the remaining steps and rounds; returns the metrics of the rounds finished now."""
        spr = self.config.rounds.steps_per_round
        finished: list[dict[str, Any]] = []
        if self.step > 0 and self.step % spr == 0 and not round_finished(self.run_dir, self.step // spr):
            finished.append(self.end_round(self.step // spr))  # killed during the round's end work
        batches = ranks.training_batches(self.loader, self.fitting, self.threshold)
        while self.step < self.total_steps:
            batch = next(batches)
            self.train_step(batch)
            if self.stop_signal is not None:
                self.save_last()  # between steps: the state is consistent
                break
            if self.step % spr == 0:
                finished.append(self.end_round(self.step // spr))
            elif self.step % self.config.rounds.checkpoint_every == 0:
                self.save_last()
        return finished

    def request_stop(self, signum: int = 0) -> None:
        """Stop after the current step, writing last.pt (safe to call from a signal handler)."""
        self.stop_signal = signum

    @property
    def stopped_early(self) -> bool:
        return self.stop_signal is not None and self.step < self.total_steps

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        nb = self._pin
        out = {k: (v.to(self.device, non_blocking=nb) if isinstance(v, torch.Tensor) else v)
               for k, v in batch.items()}
        if self.channels_last:
            out["img"] = out["img"].contiguous(memory_format=torch.channels_last)
        return out

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on `batch` (a collated batch from the training loader)."""
        started = time.perf_counter()
        cfg = self.config
        self.model.train()
        cpu_batch = self.last_batch = batch  # kept for inspection (tests, overlays)
        batch = self._to_device(batch)
        pred = predict(self.train_model, self.body, batch["img"], self.camera,
                       need_vertices=cfg.losses.vertex_weight > 0, amp_dtype=self.amp_dtype,
                       need_iterations=needs_iterations(self.extensions))
        round_number = self.current_round
        supervision = self.fitting.supervision_for(cpu_batch, pred, self.step, round_number)
        supervision = supervision.to(self.device, non_blocking=self._pin)
        terms = loss_terms(pred, batch, supervision, self.body, cfg.losses)
        terms = add_extension_terms(terms, self.extensions, pred, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["total"]).backward()
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.fitting.publish(cpu_batch, pred, self.step, round_number)
        self.step += 1
        values = {k: float(v.detach()) for k, v in terms.items()}
        self._accumulate(values, supervision, time.perf_counter() - started)
        for key, value in extension_metrics(self.extensions).items():  # e.g. the discriminator's accuracy
            self.round_acc[f"ext/{key}"] = self.round_acc.get(f"ext/{key}", 0.0) + value
        if self.is_main and self.step % cfg.rounds.log_every == 0:
            self._log_step(values)
        if self.on_step is not None:
            self.on_step(self)
        return values

    def _accumulate(self, values: dict[str, float], supervision: Any, seconds: float) -> None:
        acc = self.round_acc
        for key, value in values.items():
            acc[f"loss/{key}"] = acc.get(f"loss/{key}", 0.0) + value
        acc["batches"] += 1
        acc["samples"] += int(supervision.valid.shape[0])
        acc["supervised_fit"] += int(supervision.from_fit.sum())
        acc["batches_with_fit"] += int(bool(supervision.from_fit.any()))
        acc["supervised_gt"] += int((supervision.valid & ~supervision.from_fit).sum())
        acc["steps_time"] += seconds
        self.last_supervision = supervision

    def _log_step(self, values: dict[str, float]) -> None:
        logged = {f"train/{k}": v for k, v in values.items()}
        logged["train/lr"] = self.scheduler.get_last_lr()[0]
        logged["train/round"] = self.current_round
        logged |= {f"train/{k}": v for k, v in extension_metrics(self.extensions).items()}
        sup = self.last_supervision
        logged["train/supervised_fit_frac"] = float(sup.from_fit.float().mean())
        stats = self.fitting.stats()
        for key in FIT_LOG_KEYS:
            if isinstance(stats.get(key), int | float):
                logged[f"fitting/{key}"] = stats[key]
        for reason, count in stats.get("failed_by_reason", {}).items():
            logged[f"fitting/failed/{reason}"] = count
        self.logger.log(logged, step=self.step)

    # ----------------------------------------------------------------------------- rounds

    def end_round(self, number: int) -> dict[str, Any]:
        """Checkpoint, snapshot, evaluation and fit statistics of round `number` (1-based)."""
        cfg = self.config
        folder = round_dir(self.run_dir, number)
        folder.mkdir(parents=True, exist_ok=True)
        if cfg.rounds.drain_fits_s > 0:
            # The round's statistics and snapshot should include the fits of its own predictions;
            # the queue is bounded (a few batches per actor), so this is short.
            self.fitting.drain(cfg.rounds.drain_fits_s)
        if not self.is_main:
            return ranks.follow_round_end(self)
        stats = self.fitting.stats()
        fit_stats = {k: v for k, v in stats.items() if isinstance(v, int | float | str | type(None))}
        if "failed_by_reason" in stats:
            fit_stats["failed_by_reason"] = dict(stats["failed_by_reason"])
        store_stats = train_fit_stats(self.store, self.data.sizes, self.threshold)
        counters = self.store.counters()
        accepted_in_round = int(counters.get("by_round", {}).get(str(number), {}).get("accepted", 0))
        new_in_round = store_stats["fits_count"] - self.round_start_count
        evaluation = evaluate_model(self.model, self.body, self.test_loader, self.device, camera=self.camera,
                                    max_samples=cfg.rounds.eval_max_samples, amp_dtype=self.amp_dtype)
        acc = ranks.round_totals(self.round_acc)  # collective
        batches = max(1, acc["batches"])
        metrics: dict[str, Any] = {
            "round": number,
            "step": self.step,
            "elapsed_s": self.elapsed_s,
            **evaluation.metrics(),
            **{k: v for k, v in store_stats.items() if k != "median_fit_loss"},
            "fits_accepted_in_round": accepted_in_round,
            "fits_new_in_round": new_in_round,
            "fits_improved_in_round": max(0, accepted_in_round - new_in_round),
            "supervised_fit_frac": acc["supervised_fit"] / max(1, acc["samples"]),
            "supervised_gt_frac": acc["supervised_gt"] / max(1, acc["samples"]),
            "batches_with_fit_supervision": acc["batches_with_fit"],
            "train_loss": {k.removeprefix("loss/"): acc[k] / batches for k in acc if k.startswith("loss/")},
            # round means of the loss extensions' diagnostics (HMR's prior: adv/d_loss, adv/d_acc, ...)
            "extensions": {k.removeprefix("ext/"): acc[k] / batches for k in acc if k.startswith("ext/")},
            "steps_per_s": acc["batches"] / acc["steps_time"] if acc["steps_time"] else None,
            "fitting_mode": self.fitting.mode,
            "fitting": fit_stats,
            **fit_coverage(stats, self._fit_base),
        }
        self._fit_base = coverage_base(stats)
        # synthetic training data has hidden ground truth: the fits' own 3D error (others are skipped)
        metrics.update(fit_truth_metrics(self.store, self.data.train_datasets, self.body, self.threshold))
        if self.is_main:
            if cfg.rounds.snapshot_store:
                snapshot = folder / STORE_DIR
                if snapshot.exists():
                    shutil.rmtree(snapshot)  # a previous attempt at this round's end was interrupted
                self.store.snapshot(snapshot)
                metrics["store_snapshot"] = str(snapshot)
            metrics["overlays"] = self._overlays(folder, number)
            metrics["checkpoint"] = str(folder / "checkpoint.pt")
            self._record_round(number, metrics)
            self.round_start_count = store_stats["fits_count"]
            self.round_acc = self._empty_round_acc()
            state = self.state_dict()
            save_checkpoint(folder / "checkpoint.pt", state)
            write_metrics(folder / METRICS_FILE, metrics)  # marks the round finished
            # last.pt last: a kill before it resumes from the previous last.pt and redoes this round.
            save_checkpoint(self.run_dir / LAST_CHECKPOINT, state)
            logged = {f"eval/{k}": metrics[k] for k in ("mpjpe", "pa_mpjpe", "pve")}
            logged |= {f"fits/{k}": metrics[k] for k in ("frac_valid", "frac_valid_of_train", "coverage",
                                                          "mean_fit_loss", "fits_improved_in_round")}
            self.logger.log(logged, step=self.step)
        ranks.finish_round_end()
        return metrics

    def _record_round(self, number: int, metrics: dict[str, Any]) -> None:
        summary = {k: metrics[k] for k in ("mpjpe", "pa_mpjpe", "frac_valid", "coverage", "mean_fit_loss",
                                            "fits_improved_in_round", "step")}
        self.fitting.record_round(number, summary)

    def _overlays(self, folder: Path, number: int) -> list[str]:
        paths, arrays, captions = round_overlays(
            self.model, self.body, self.data.train_datasets[0], self.store, self.camera, self.device,
            self.config.rounds.overlay_images, folder, self.amp_dtype)
        if arrays:
            self.logger.log_images("train/overlays", arrays, [f"{c}, round {number}" for c in captions],
                                   step=self.step)
        return paths

    # ----------------------------------------------------------------------------- teardown

    def close(self) -> None:
        """Stop the fitting actors, Ray (if started here), wandb; idempotent."""
        close_all(self._closers)

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
