"""Batched two-stage SMPLify (SPIN's): camera stage, then body stage; per-sample results and quality.

Stage 1 optimises global orientation and camera translation against the torso joints with a depth
term; stage 2 optimises body pose, betas and global orientation (camera fixed) against all joints
with the GMoF reprojection term and the GMM, angle and shape priors (see `losses`, `priors`).

`reference` mode evaluates the full mesh forward every iteration, as SPIN's implementation does.
`default` mode uses the body model's joints-only fast path, solves the camera stage on joints posed
once (a global rotation only rotates the posed body about the pelvis, so each camera step is one
3x3 rotation of 49 points), and runs the schedule of `config.DEFAULT_PRESET` (fewer, larger Adam
steps, then a per-sample L-BFGS polish with the priors at half weight, and a robust anchor to the
initialisation throughout the body stage). Both modes report the same `fit_quality`; with the same
schedule and the anchor off they minimise the same objective and give the same fits to float
precision. The optimisation loops are sync-free (fixed lengths, per-sample masks and budgets).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from fitting_workers.smplify.adam import minimize_adam
from fitting_workers.smplify.camera import solve_camera
from fitting_workers.smplify.config import SAMPLES_PER_THREAD, OptimizerSettings, SmplifyConfig
from fitting_workers.smplify.lbfgs import LbfgsSettings, minimize_lbfgs
from fitting_workers.smplify.losses import (
    anchor_term,
    body_data_term,
    camera_loss,
    fit_quality,
    fitting_confidence,
)
from fitting_workers.smplify.priors import MaxMixturePrior, angle_prior, shape_prior
from spin.geometry import axis_angle_to_matrix, estimate_cam_t
from spin.joints import MODEL_JOINT_INDEX

# Loss reported for a failed sample: finite, and far above any validity threshold.
FAILED_LOSS = 1e10
# Why a sample failed: `FitResult.failure` holds the index into this tuple (0 = not failed).
FAILURE_REASONS = ("ok", "nonfinite_input", "too_few_keypoints", "camera_behind", "diverged")
NONFINITE_INPUT, TOO_FEW_KEYPOINTS, CAMERA_BEHIND, DIVERGED = 1, 2, 3, 4
# Index of the SMPL root joint (pelvis) among the 49 keypoint joints (OP MidHip).
PELVIS = int(np.flatnonzero(np.asarray(MODEL_JOINT_INDEX) == 0)[0])

ArrayLike = np.ndarray | torch.Tensor


@dataclass
class FitResult:
    """Per-sample SMPLify results (numpy). pose `(B, 72)` axis-angle, betas `(B, 10)`, cam_t `(B, 3)`,
    loss `(B,)` = `fit_quality` of the fit (FAILED_LOSS where failed), failure `(B,)` int8: 0 for a
    fit, else the index of its reason in FAILURE_REASONS (NaN/Inf inputs, fewer confident keypoints
    than `min_keypoints`, a camera behind the image plane, a diverged optimisation) — then
    pose/betas/cam_t hold the (finite) initialisation."""

    pose: np.ndarray
    betas: np.ndarray
    cam_t: np.ndarray
    loss: np.ndarray
    failure: np.ndarray

    def __len__(self) -> int:
        return len(self.loss)

    @property
    def failed(self) -> np.ndarray:
        """`(B,)` bool: the samples that are not fits (never stored, never supervise)."""
        return self.failure != 0

    def failure_counts(self) -> dict[str, int]:
        """Failed samples by reason name (reasons with no sample left out)."""
        return failure_counts(self.failure)


def failure_counts(failure: np.ndarray) -> dict[str, int]:
    """Failure codes `(B,)` (indices into FAILURE_REASONS) counted by reason name, zero counts left out."""
    counts = np.bincount(np.asarray(failure, np.int64), minlength=len(FAILURE_REASONS))
    return {name: int(n) for name, n in zip(FAILURE_REASONS[1:], counts[1:], strict=True) if n}


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


@contextmanager
def _intra_op_threads(threads: int) -> Iterator[None]:
    """Run the block with at most `threads` torch intra-op threads (process-wide), then restore."""
    before = torch.get_num_threads()
    if threads >= before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _split(x: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.split(x, list(sizes), dim=1))


class SMPLify:
    """Batched SMPLify on `device` with a `BodyModel` and an SMPLify GMM pickle (`prior_path`)."""

    def __init__(self, body: torch.nn.Module, prior_path, config: SmplifyConfig | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.config = config if config is not None else SmplifyConfig()
        self.settings: OptimizerSettings = self.config.resolved()
        self.device = torch.device(device)
        self.body = body.to(self.device)
        self.prior = MaxMixturePrior.from_pickle(prior_path).to(self.device)

    # -- body evaluation -------------------------------------------------------------------------
    def _joints(self, pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """49 joints `(B, 49, 3)` of pose `(B, 72)`, betas `(B, 10)` the way this mode evaluates them."""
        if self.config.mode == "reference":
            return self.body.forward(pose, betas).joints
        return self.body.joints(pose, betas)

    def quality(self, pose: ArrayLike, betas: ArrayLike, cam_t: ArrayLike,
                keypoints: ArrayLike) -> np.ndarray:
        """`fit_quality` `(B,)` of pose (B,72), betas (B,10), cam_t (B,3) against keypoints (B,49,3)."""
        with torch.no_grad():
            pose_t, betas_t, cam_t_t, kp = (self._tensor(a) for a in (pose, betas, cam_t, keypoints))
            loss = fit_quality(self._joints(pose_t, betas_t), cam_t_t, kp, self.config.focal_length,
                               self.config.img_res, self.config.sigma)
        return loss.cpu().numpy().astype(np.float32)

    @staticmethod
    def _effort(effort: ArrayLike | None, batch: int) -> np.ndarray | None:
        """Validated per-sample effort `(B,)` float64 on the host, or None."""
        if effort is None:
            return None
        effort = np.asarray(effort.detach().cpu() if torch.is_tensor(effort) else effort, dtype=np.float64)
        if effort.shape != (batch,) or not np.isfinite(effort).all() or (effort < 0).any():
            raise ValueError(f"SMPLify.fit expects effort (B,) = ({batch},) finite and >= 0, got shape "
                             f"{effort.shape}")
        return effort

    def _tensor(self, array: ArrayLike) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array) if not torch.is_tensor(array) else array,
                               dtype=torch.float32).to(self.device)

    # -- the fit ---------------------------------------------------------------------------------
    def fit(self, keypoints: ArrayLike, init_pose: ArrayLike, init_betas: ArrayLike,
            init_cam_t: ArrayLike | None = None, effort: ArrayLike | None = None) -> FitResult:
        """Fit a batch. keypoints `(B, 49, 3)` in crop pixels with confidence, init_pose `(B, 72)`,
        init_betas `(B, 10)`, init_cam_t `(B, 3)` or None (then weighted least squares from the
        initial joints and the keypoints). Never returns NaN: bad samples come back failed.

        effort `(B,)` >= 0 (None = all 1): per-sample multiplier of the body stage's iterations
        (Adam and polish): a sample with effort 2 takes twice the schedule's steps, one with 0.5
        half, one with 0 keeps its camera-stage result. The batch runs for the largest budget, so
        raising one sample's effort costs the whole batch that many evaluations.
        """
        with _intra_op_threads(self._threads_for(len(keypoints))):
            return self._fit(keypoints, init_pose, init_betas, init_cam_t, effort)

    def _threads_for(self, batch: int) -> int:
        """Intra-op threads for a fit of `batch` samples (`SmplifyConfig.threads`)."""
        if self.config.mode == "reference" or self.device.type != "cpu":
            return torch.get_num_threads()
        wanted = self.config.threads if self.config.threads > 0 else -(-batch // SAMPLES_PER_THREAD)
        return max(1, min(wanted, torch.get_num_threads()))

    def _fit(self, keypoints: ArrayLike, init_pose: ArrayLike, init_betas: ArrayLike,
             init_cam_t: ArrayLike | None, effort: ArrayLike | None) -> FitResult:
        kp, pose0, betas0 = (self._tensor(a) for a in (keypoints, init_pose, init_betas))
        batch = kp.shape[0]
        if kp.shape != (batch, 49, 3) or pose0.shape != (batch, 72) or betas0.shape != (batch, 10):
            raise ValueError("SMPLify.fit expects keypoints (B,49,3), init_pose (B,72), init_betas (B,10); "
                             f"got {tuple(kp.shape)}, {tuple(pose0.shape)}, {tuple(betas0.shape)}")
        cam0 = None if init_cam_t is None else self._tensor(init_cam_t)
        if cam0 is not None and cam0.shape != (batch, 3):
            raise ValueError(f"SMPLify.fit expects init_cam_t (B,3), got {tuple(cam0.shape)}")
        if batch == 0:
            empty = np.zeros((0,), np.float32)
            return FitResult(pose=np.zeros((0, 72), np.float32), betas=np.zeros((0, 10), np.float32),
                             cam_t=np.zeros((0, 3), np.float32), loss=empty, failure=np.zeros((0,), np.int8))

        failure = torch.zeros(batch, dtype=torch.int8, device=kp.device)
        bad = ~torch.isfinite(kp).flatten(1).all(dim=1)
        bad |= ~torch.isfinite(pose0).all(dim=1) | ~torch.isfinite(betas0).all(dim=1)
        if cam0 is not None:
            bad |= ~torch.isfinite(cam0).all(dim=1)
        failure = torch.where(bad, NONFINITE_INPUT, failure)
        # Too few confident keypoints leave the fit unconstrained (and all-zero confidence would
        # score a perfect, unbeatable loss of 0): such a sample is a failed fit, never a fit.
        confident = (torch.nan_to_num(fitting_confidence(kp)) > 0).sum(dim=1)
        few = ~bad & (confident < self.config.min_keypoints)
        failure = torch.where(few, TOO_FEW_KEYPOINTS, failure)
        bad |= few
        # Sanitise bad samples so their (zero-weighted) terms stay finite and cannot poison the batch;
        # finite init values are kept, since a failed sample returns its initialisation.
        kp = torch.where(bad[:, None, None], torch.zeros_like(kp), kp)
        pose0 = _finite_or_zero(pose0)
        betas0 = _finite_or_zero(betas0)
        with torch.no_grad():
            if cam0 is None:
                joints0 = self._joints(pose0, betas0)
                conf_kp = torch.cat([kp[..., :2], fitting_confidence(kp)[..., None]], dim=-1)
                cam0 = estimate_cam_t(joints0, conf_kp, self.config.focal_length, self.config.img_res)
            usable_cam = torch.isfinite(cam0).all(dim=1) & (cam0[:, 2] > 0)
            failure = torch.where(~bad & ~usable_cam, CAMERA_BEHIND, failure)
            bad |= ~usable_cam
            fallback = kp.new_tensor([0.0, 0.0, 2 * self.config.focal_length / (0.9 * self.config.img_res)])
            cam0 = torch.where(usable_cam[:, None], cam0, fallback.expand(batch, 3))
        weight = (~bad).to(kp.dtype)

        orient, cam_t = self._camera_stage(kp, pose0, betas0, cam0, weight)
        pose, betas = self._body_stage(kp, torch.cat([orient, pose0[:, 3:]], dim=1), betas0, cam_t, weight,
                                       init_body_pose=pose0[:, 3:], init_betas=betas0,
                                       effort=self._effort(effort, batch))

        with torch.no_grad():
            loss = fit_quality(self._joints(pose, betas), cam_t, kp, self.config.focal_length,
                               self.config.img_res, self.config.sigma)
        diverged = ~torch.isfinite(loss) | (cam_t[:, 2] <= 0)
        for param in (pose, betas, cam_t):
            diverged |= ~torch.isfinite(param).all(dim=1)
        failure = torch.where(~bad & diverged, DIVERGED, failure)
        failed = bad | diverged
        pose = torch.where(failed[:, None], pose0, pose)
        betas = torch.where(failed[:, None], betas0, betas)
        cam_t = torch.where(failed[:, None], cam0, cam_t)
        loss = torch.where(failed, torch.full_like(loss, FAILED_LOSS), loss)
        return FitResult(
            pose=pose.detach().cpu().numpy().astype(np.float32),
            betas=betas.detach().cpu().numpy().astype(np.float32),
            cam_t=cam_t.detach().cpu().numpy().astype(np.float32),
            loss=loss.detach().cpu().numpy().astype(np.float32),
            failure=failure.cpu().numpy(),
        )

    # -- stages ----------------------------------------------------------------------------------
    def _camera_stage(self, kp: torch.Tensor, pose0: torch.Tensor, betas0: torch.Tensor, cam0: torch.Tensor,
                      weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: global orientation `(B, 3)` and cam_t `(B, 3)` on the torso joints + depth term."""
        cfg = self.config
        body_pose = pose0[:, 3:]
        if self.settings.camera_optimizer == "lm":
            with torch.no_grad():
                local = self._joints(torch.cat([torch.zeros_like(pose0[:, :3]), body_pose], dim=1), betas0)
                pelvis = local[:, PELVIS : PELVIS + 1]
                return solve_camera(local - pelvis, pelvis, pose0[:, :3], cam0, cam0, kp, weight,
                                    self.settings.iters_camera, cfg.focal_length, cfg.img_res,
                                    cfg.weights.depth)
        if cfg.mode == "reference":
            def joints_of(orient: torch.Tensor) -> torch.Tensor:
                return self._joints(torch.cat([orient, body_pose], dim=1), betas0)
        else:
            # The root rotation turns the whole posed body about the pelvis, so pose once, rotate per step.
            with torch.no_grad():
                unrotated = torch.cat([torch.zeros_like(pose0[:, :3]), body_pose], dim=1)
                local = self.body.joints(unrotated, betas0)
            pelvis = local[:, PELVIS : PELVIS + 1]
            centred = local - pelvis

            def joints_of(orient: torch.Tensor) -> torch.Tensor:
                return centred @ axis_angle_to_matrix(orient).transpose(1, 2) + pelvis

        def objective(orient: torch.Tensor, cam_t: torch.Tensor) -> torch.Tensor:
            loss = camera_loss(joints_of(orient), cam_t, cam0, kp, cfg.focal_length, cfg.img_res,
                               cfg.weights.depth)
            return loss * weight

        orient, cam_t = self._optimize(objective, [pose0[:, :3], cam0], self.settings.iters_camera)
        return orient, cam_t

    def _body_stage(self, kp: torch.Tensor, pose_init: torch.Tensor, betas_init: torch.Tensor,
                    cam_t: torch.Tensor, weight: torch.Tensor, init_body_pose: torch.Tensor,
                    init_betas: torch.Tensor, effort: np.ndarray | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: pose `(B, 72)` and betas `(B, 10)` with the camera fixed; effort `(B,)` scales
        each sample's iteration budget (host array, so the loop lengths need no device read)."""
        confidence = fitting_confidence(kp)
        settings = self.settings

        def objective_with(prior_scale: float) -> Callable[..., torch.Tensor]:
            def objective(orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
                pose = torch.cat([orient, body_pose], dim=1)
                loss = self._body_loss(pose, betas, cam_t, kp, confidence, init_body_pose, init_betas,
                                       prior_scale)
                return loss * weight
            return objective

        def budget_of(iters: int) -> tuple[int, torch.Tensor | None]:
            if effort is None:
                return iters, None
            steps = np.ceil(effort * iters - 1e-9).astype(np.int64)
            return int(steps.max(initial=0)), torch.as_tensor(steps, device=kp.device)

        iters, budget = budget_of(settings.iters_body)
        params = self._optimize(objective_with(1.0), [pose_init[:, :3], pose_init[:, 3:], betas_init], iters,
                                budget=budget)
        iters, budget = budget_of(settings.polish_iters)
        if iters > 0:
            params = self._optimize(objective_with(settings.polish_prior_scale), params, iters,
                                    optimizer="lbfgs", lr=1.0, budget=budget)
        orient, body_pose, betas = params
        return torch.cat([orient, body_pose], dim=1), betas

    def _body_loss(self, pose: torch.Tensor, betas: torch.Tensor, cam_t: torch.Tensor, kp: torch.Tensor,
                   confidence: torch.Tensor, init_body_pose: torch.Tensor, init_betas: torch.Tensor,
                   prior_scale: float = 1.0) -> torch.Tensor:
        """SPIN's body-stage objective per sample `(B,)` (+ the optional anchor term); prior_scale
        multiplies the three prior terms."""
        cfg, w, s = self.config, self.config.weights, self.settings
        body_pose = pose[:, 3:]
        joints = self._joints(pose, betas)
        loss = body_data_term(joints, cam_t, kp, confidence, cfg.focal_length, cfg.img_res, cfg.sigma)
        prior = w.pose_prior**2 * self.prior(body_pose) + w.angle_prior**2 * angle_prior(body_pose)
        prior = prior + w.shape_prior**2 * shape_prior(betas)
        loss = loss + prior_scale * prior
        if s.anchor_weight > 0:
            loss = loss + s.anchor_weight * anchor_term(body_pose, betas, init_body_pose, init_betas,
                                                        s.anchor_sigma)
        return loss

    def _optimize(self, objective: Callable[..., torch.Tensor], init: list[torch.Tensor], iters: int,
                  optimizer: str | None = None, lr: float | None = None,
                  budget: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Minimise the per-sample `objective(*params) (B,)` from `init` (list of (B, k)); returns params.

        optimizer / lr default to the config's schedule; budget `(B,)` int caps each sample's steps.
        """
        optimizer = optimizer or self.settings.optimizer
        lr = lr or self.settings.lr
        sizes = tuple(p.shape[1] for p in init)

        def flat_objective(flat: torch.Tensor) -> torch.Tensor:
            return objective(*_split(flat, sizes))

        x0 = torch.cat(init, dim=1)
        if optimizer == "lbfgs":
            settings = LbfgsSettings(rel_tolerance=self.settings.polish_tolerance)
            x = minimize_lbfgs(flat_objective, x0, max_iter=iters, lr=lr, settings=settings, budget=budget)
        else:
            x = minimize_adam(flat_objective, x0, iters=iters, lr=lr, budget=budget,
                              final_lr_fraction=self.settings.final_lr_fraction)
        return list(_split(x, sizes))
