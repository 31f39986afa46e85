"""Typed configuration of batched SMPLify (SPIN's objective; optimiser presets per mode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from spin.camera import CROP_RES, FOCAL_LENGTH

MODES = ("default", "reference")
OPTIMIZERS = ("adam", "lbfgs")
CAMERA_OPTIMIZERS = ("adam", "lm")
# Default mode on a CPU: one intra-op thread per this many samples of a batch (see SmplifyConfig.threads).
SAMPLES_PER_THREAD = 512


@dataclass
class SmplifyWeights:
    """Loss weights as SPIN writes them; every one is squared when applied, as SPIN does (4.78² …)."""

    pose_prior: float = 4.78
    angle_prior: float = 15.2
    shape_prior: float = 5.0
    depth: float = 100.0


@dataclass(frozen=True)
class OptimizerSettings:
    """The resolved optimiser schedule of one fit (what `SmplifyConfig.resolved()` returns)."""

    optimizer: str
    lr: float
    iters_camera: int
    iters_body: int
    polish_iters: int = 0
    final_lr_fraction: float = 1.0
    polish_tolerance: float = 1e-6
    polish_prior_scale: float = 1.0
    anchor_weight: float = 0.0
    anchor_sigma: float = 0.0
    camera_optimizer: str = "adam"


# SPIN's released SMPLify: Adam, lr 1e-2, 100 iterations per stage.
REFERENCE_PRESET = OptimizerSettings(optimizer="adam", lr=1e-2, iters_camera=100, iters_body=100,
                                     polish_iters=0)
# Chosen from the ablation of benchmarks/smplify.py on two synthetic sets (different body models,
# pose distributions, noise): SPIN's objective fitted to convergence fits the keypoint noise (lower
# 2D loss, worse 3D error). A robust anchor to the network's initialisation (Pavlakos et al. 2018,
# Geman-McClure on θ - θ_init and β - β_init) holds the depth-ambiguous directions, so the fit may
# run further. The camera stage is SPIN's loss solved by 5 Levenberg-Marquardt iterations (it reaches
# a lower camera loss than SPIN's 100 Adam steps, and the body starts better aligned: -3 mm MPJPE on
# both sets vs 25 Adam steps); then 8 Adam steps at lr 6e-2 and 16 per-sample L-BFGS iterations with
# the priors at half weight (the anchor now carries the regularisation): per evaluation, L-BFGS
# gains more than Adam once Adam has made the first large moves (8+16 beats 12+12 on both sets).
# 25 body evaluations vs SPIN's 200.
DEFAULT_PRESET = OptimizerSettings(optimizer="adam", lr=6e-2, iters_camera=5, iters_body=8, polish_iters=16,
                                   polish_prior_scale=0.5, anchor_weight=300.0, anchor_sigma=0.3,
                                   camera_optimizer="lm")


@dataclass
class SmplifyConfig:
    """Batched SMPLify settings.

    `mode` picks how the body is evaluated: `reference` runs the full mesh forward every iteration
    exactly as SPIN does; `default` uses the body model's joints-only fast path. `optimizer`, `lr`,
    `iters_camera`, `iters_body` and `polish_iters` (per-sample L-BFGS iterations that finish the
    body stage) left as None take the mode's preset (reference = SPIN's Adam, lr 1e-2, 100 + 100
    iterations, no polish; default = the tuned schedule in DEFAULT_PRESET); set them to override.
    The other schedule fields, also None = the mode's preset: `final_lr_fraction` (< 1 anneals
    Adam's rate by a cosine to lr·fraction), `polish_tolerance` (a sample's L-BFGS stops once a step
    lowers its loss by less than this fraction), `polish_prior_scale` (multiplies the pose, angle
    and shape priors during the polish: the per-stage prior weight), `anchor_weight` and
    `anchor_sigma`: anchor_weight > 0 adds the anchor of Pavlakos et al. 2018 to the body stage,
    anchor_weight · Σ ρ(θ_body − θ_init) + ρ(β − β_init), with ρ Geman–McClure of scale anchor_sigma
    (radians / shape units; 0 = squared), which keeps the fit near the network's initialisation
    where the keypoints cannot tell (depth); the reference mode has none, as SPIN.
    `camera_optimizer`: `adam` (SPIN's, with the schedule's lr) or `lm` (batched Levenberg–Marquardt
    on the same camera loss, `camera.solve_camera`; `iters_camera` then counts LM iterations).
    `threshold` is the stored-loss level below which a fit counts as valid (SPIN: 100).
    `threads` (CPU, default mode): intra-op threads a fit may use, at most torch's setting; 0 =
    automatic, one per SAMPLES_PER_THREAD samples. A batch-64 fit is hundreds of tiny ops, which a
    second thread does not speed up; it only spins (and on a shared machine waits for its core),
    so one thread gives the same fits for a fraction of the CPU time. The reference mode, SPIN's,
    always runs with torch's setting.
    `min_keypoints`: a sample with fewer confident keypoints (confidence > 0, SPIN's ignored joints
    excluded) is a failed fit (`too_few_keypoints`); 6 leaves the camera stage's four torso joints
    and at least two more to pose the body.
    """

    mode: str = "default"
    optimizer: Optional[str] = None
    lr: Optional[float] = None
    iters_camera: Optional[int] = None
    iters_body: Optional[int] = None
    polish_iters: Optional[int] = None
    final_lr_fraction: Optional[float] = None
    polish_tolerance: Optional[float] = None
    polish_prior_scale: Optional[float] = None
    anchor_weight: Optional[float] = None
    anchor_sigma: Optional[float] = None
    camera_optimizer: Optional[str] = None
    sigma: float = 100.0
    weights: SmplifyWeights = field(default_factory=SmplifyWeights)
    focal_length: float = FOCAL_LENGTH
    img_res: int = CROP_RES
    threshold: float = 100.0
    min_keypoints: int = 6
    threads: int = 0

    def resolved(self) -> OptimizerSettings:
        """The optimiser schedule this config runs: the mode's preset with explicit fields applied.

        Raises ValueError for an unknown mode or optimiser, or a negative iteration count.
        """
        if self.mode not in MODES:
            raise ValueError(f"SMPLify mode must be one of {MODES}, got {self.mode!r}")
        preset = REFERENCE_PRESET if self.mode == "reference" else DEFAULT_PRESET
        optimizer = self.optimizer if self.optimizer is not None else preset.optimizer
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"SMPLify optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if self.lr is not None:
            lr = float(self.lr)
        elif optimizer == preset.optimizer:
            lr = preset.lr
        else:
            # An optimiser other than the preset's keeps its own natural step scale.
            lr = 1.0 if optimizer == "lbfgs" else REFERENCE_PRESET.lr
        iters_camera = preset.iters_camera if self.iters_camera is None else int(self.iters_camera)
        iters_body = preset.iters_body if self.iters_body is None else int(self.iters_body)
        polish_iters = preset.polish_iters if self.polish_iters is None else int(self.polish_iters)
        if min(iters_camera, iters_body, polish_iters) < 0:
            raise ValueError("SMPLify iteration counts must be >= 0")
        if lr <= 0:
            raise ValueError("SMPLify lr must be > 0")
        if self.threads < 0:
            raise ValueError(f"SMPLify threads must be >= 0 (0 = automatic), got {self.threads}")
        rest = {}
        for name in ("final_lr_fraction", "polish_tolerance", "polish_prior_scale", "anchor_weight",
                     "anchor_sigma"):
            value = getattr(self, name)
            rest[name] = getattr(preset, name) if value is None else float(value)
            if rest[name] < 0:
                raise ValueError(f"SMPLify {name} must be >= 0, got {rest[name]}")
        camera_optimizer = preset.camera_optimizer if self.camera_optimizer is None else self.camera_optimizer
        if camera_optimizer not in CAMERA_OPTIMIZERS:
            raise ValueError(f"SMPLify camera_optimizer must be one of {CAMERA_OPTIMIZERS}, "
                             f"got {camera_optimizer!r}")
        return OptimizerSettings(optimizer=optimizer, lr=lr, iters_camera=iters_camera, iters_body=iters_body,
                                 polish_iters=polish_iters, camera_optimizer=camera_optimizer, **rest)
