"""Batched two-stage SMPLify (SPIN's): camera stage, then body stage; per-sample results and quality.

Stage 1 optimises global orientation and camera translation against the torso joints with a depth
term; stage 2 optimises body pose, betas and global orientation (camera fixed) against all joints
with the GMoF reprojection term and the GMM, angle and shape priors (see `losses`, `priors`).

`reference` mode evaluates the full mesh forward every iteration, as SPIN's implementation does.
`default` mode uses the body model's joints-only fast path, solves the camera stage on joints posed
once (a global rotation only rotates the posed body about the pelvis, so each camera step is one
3x3 rotation of 49 points), and runs the tuned schedule of `config.DEFAULT_PRESET` (fewer, larger
Adam steps, then a per-sample L-BFGS polish). Both modes minimise the same objective and report the
same `fit_quality`; with the same optimiser schedule they give the same fits to float precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from fitting_workers.smplify.config import OptimizerSettings, SmplifyConfig
from fitting_workers.smplify.lbfgs import minimize_lbfgs
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
        counts = np.bincount(self.failure.astype(np.int64), minlength=len(FAILURE_REASONS))
        return {name: int(n) for name, n in zip(FAILURE_REASONS[1:], counts[1:], strict=True) if n}


def _finite_or_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.where(torch.isfinite(x), x, torch.zeros_like(x))


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

    def _tensor(self, array: ArrayLike) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array) if not torch.is_tensor(array) else array,
                               dtype=torch.float32).to(self.device)

    # -- the fit ---------------------------------------------------------------------------------
    def fit(self, keypoints: ArrayLike, init_pose: ArrayLike, init_betas: ArrayLike,
            init_cam_t: ArrayLike | None = None) -> FitResult:
        """Fit a batch. keypoints `(B, 49, 3)` in crop pixels with confidence, init_pose `(B, 72)`,
        init_betas `(B, 10)`, init_cam_t `(B, 3)` or None (then weighted least squares from the
        initial joints and the keypoints). Never returns NaN: bad samples come back failed."""
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
        failure[bad] = NONFINITE_INPUT
        # Too few confident keypoints leave the fit unconstrained (and all-zero confidence would
        # score a perfect, unbeatable loss of 0): such a sample is a failed fit, never a fit.
        confident = (torch.nan_to_num(fitting_confidence(kp)) > 0).sum(dim=1)
        few = ~bad & (confident < self.config.min_keypoints)
        failure[few] = TOO_FEW_KEYPOINTS
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
            failure[~bad & ~usable_cam] = CAMERA_BEHIND
            bad |= ~usable_cam
            fallback = kp.new_tensor([0.0, 0.0, 2 * self.config.focal_length / (0.9 * self.config.img_res)])
            cam0 = torch.where(usable_cam[:, None], cam0, fallback.expand(batch, 3))
        weight = (~bad).to(kp.dtype)

        orient, cam_t = self._camera_stage(kp, pose0, betas0, cam0, weight)
        pose, betas = self._body_stage(kp, torch.cat([orient, pose0[:, 3:]], dim=1), betas0, cam_t, weight,
                                       init_body_pose=pose0[:, 3:], init_betas=betas0)

        with torch.no_grad():
            loss = fit_quality(self._joints(pose, betas), cam_t, kp, self.config.focal_length,
                               self.config.img_res, self.config.sigma)
        diverged = ~torch.isfinite(loss) | (cam_t[:, 2] <= 0)
        for param in (pose, betas, cam_t):
            diverged |= ~torch.isfinite(param).all(dim=1)
        failure[~bad & diverged] = DIVERGED
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
                    init_betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: pose `(B, 72)` and betas `(B, 10)` with the camera fixed."""
        confidence = fitting_confidence(kp)

        def objective(orient: torch.Tensor, body_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
            pose = torch.cat([orient, body_pose], dim=1)
            return self._body_loss(pose, betas, cam_t, kp, confidence, init_body_pose, init_betas) * weight

        params = self._optimize(objective, [pose_init[:, :3], pose_init[:, 3:], betas_init],
                                self.settings.iters_body)
        if self.settings.polish_iters > 0:
            params = self._optimize(objective, params, self.settings.polish_iters, optimizer="lbfgs", lr=1.0)
        orient, body_pose, betas = params
        return torch.cat([orient, body_pose], dim=1), betas

    def _body_loss(self, pose: torch.Tensor, betas: torch.Tensor, cam_t: torch.Tensor, kp: torch.Tensor,
                   confidence: torch.Tensor, init_body_pose: torch.Tensor, init_betas: torch.Tensor,
                   ) -> torch.Tensor:
        """SPIN's body-stage objective per sample `(B,)` (+ the optional anchor term)."""
        cfg, w = self.config, self.config.weights
        body_pose = pose[:, 3:]
        joints = self._joints(pose, betas)
        loss = body_data_term(joints, cam_t, kp, confidence, cfg.focal_length, cfg.img_res, cfg.sigma)
        loss = loss + w.pose_prior**2 * self.prior(body_pose)
        loss = loss + w.angle_prior**2 * angle_prior(body_pose)
        loss = loss + w.shape_prior**2 * shape_prior(betas)
        if cfg.anchor_weight > 0:
            loss = loss + cfg.anchor_weight * anchor_term(body_pose, betas, init_body_pose, init_betas)
        return loss

    def body_objective(self, pose: ArrayLike, betas: ArrayLike, cam_t: ArrayLike, keypoints: ArrayLike,
                       init_pose: ArrayLike | None = None, init_betas: ArrayLike | None = None) -> np.ndarray:
        """The body-stage objective `(B,)` that stage 2 minimises, at the given parameters (diagnostics).

        init_pose / init_betas only matter with an anchor weight (default: the parameters themselves).
        """
        with torch.no_grad():
            pose_t, betas_t, cam_t_t, kp = (self._tensor(a) for a in (pose, betas, cam_t, keypoints))
            init_pose_t = pose_t if init_pose is None else self._tensor(init_pose)
            init_betas_t = betas_t if init_betas is None else self._tensor(init_betas)
            loss = self._body_loss(pose_t, betas_t, cam_t_t, kp, fitting_confidence(kp), init_pose_t[:, 3:],
                                   init_betas_t)
        return loss.cpu().numpy().astype(np.float32)

    def _optimize(self, objective: Callable[..., torch.Tensor], init: list[torch.Tensor], iters: int,
                  optimizer: str | None = None, lr: float | None = None) -> list[torch.Tensor]:
        """Minimise the per-sample `objective(*params) (B,)` from `init` (list of (B, k)); returns params.

        optimizer / lr default to the config's schedule.
        """
        optimizer = optimizer or self.settings.optimizer
        lr = lr or self.settings.lr
        if optimizer == "lbfgs":
            sizes = tuple(p.shape[1] for p in init)
            x = minimize_lbfgs(lambda flat: objective(*_split(flat, sizes)), torch.cat(init, dim=1),
                               max_iter=iters, lr=lr)
            return list(_split(x, sizes))
        params = [p.detach().clone().requires_grad_(True) for p in init]
        adam = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999))
        for _ in range(iters):
            with torch.enable_grad():
                loss = objective(*params).sum()
                grads = torch.autograd.grad(loss, params)
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            adam.step()
        return [p.detach() for p in params]
