"""The training run's configuration: one typed dataclass tree, loaded from YAML with overrides.

`configs/default.yaml` (embedded synthetic CPU run), `configs/spin_paper.yaml` (SPIN's published
values) and `configs/cluster.yaml` are instances of `TrainConfig`; load one with
`spin.config_loading.load_config(TrainConfig, path, ["key=value", ...])`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fitting_workers.config import FittingConfig
from spin.adversarial import AdversarialConfig
from spin.data.augment import AugmentConfig
from spin.data.representations import check_representation, representation_channels
from spin.distributed.config import DistributedConfig
from spin.errors import UserError
from spin.losses import LossConfig
from spin.models.regressor import ModelConfig

AMP_MODES = ("off", "bf16", "fp16")
SCHEDULES = ("constant", "cosine")


@dataclass
class BodyConfig:
    """Body model files; all None = the synthetic model, generated into the cache on first use."""

    body_model: str | None = None
    joint_regressor_extra: str | None = None
    prior: str | None = None
    mean_params: str | None = None


@dataclass
class SyntheticDataConfig:
    """The embedded synthetic dataset (`spin data synth`), generated into the cache on first use."""

    n_train: int = 512
    n_test: int = 128
    image_size: int = 224  # rendered image side in pixels (crops are resampled to model.img_res)
    gt_fraction: float = 0.1  # train samples that keep ground-truth SMPL; the rest learn from fits
    seed: int = 0
    # 3D joints (`S`) for every train row (SPIN's layout of a 3D dataset), or only for the
    # gt_fraction rows: then the others have no 3D supervision at all and must learn it from fits.
    joints3d_for_all: bool = False
    # What the network sees (NBF, Omran et al. 2018): rgb, textured, silhouette, parts3/6/12/24 or
    # heatmaps14/24 (spin.data.representations.REPRESENTATIONS); same people, cameras, keypoints.
    representation: str = "rgb"


@dataclass
class DatasetSpec:
    """One SPIN-format dataset: annotations `.npz` plus an image folder or an HDF5 image pack."""

    name: str = ""
    annotations: str = ""
    images: str | None = None  # image root the npz's imgname paths are relative to
    h5: str | None = None  # HDF5 pack made by `spin data pack` (used instead of `images`)
    ratio: float = 1.0  # share of the training batches (normalised over the train list)


@dataclass
class DataConfig:
    """What to train and evaluate on. `source`: `synthetic` (generated) or `files` (train/test below)."""

    source: str = "synthetic"
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    train: list[DatasetSpec] = field(default_factory=list)
    test: DatasetSpec | None = None
    batch_size: int = 64
    num_workers: int = 2
    pin_memory: bool = True  # only takes effect on CUDA
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class OptimConfig:
    """Adam as SPIN (lr 5e-5, no weight decay); optional cosine decay, warm-up, clipping, AMP."""

    lr: float = 5e-5
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_factor: float = 0.1  # cosine decays to lr · min_lr_factor at the last step
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    amp: str = "bf16"  # autocast dtype on CUDA ("off", "bf16", "fp16"); CPU always runs float32
    channels_last: bool = True  # on CUDA


@dataclass
class RoundsConfig:
    """A round = `steps_per_round` steps, then checkpoint, store snapshot, evaluation, fit stats."""

    num_rounds: int = 3
    steps_per_round: int = 1000
    checkpoint_every: int = 200  # also write last.pt every N steps (resume after a kill)
    log_every: int = 20
    eval_batch_size: int = 64
    eval_max_samples: int = 0  # 0 = the whole test split
    overlay_images: int = 4  # training crops with the predicted and fitted meshes, per round
    snapshot_store: bool = True
    drain_fits_s: float = 60.0  # at a round's end, wait up to this long for in-flight fits (async)


@dataclass
class WandbConfig:
    """Weights & Biases logging; offline unless the user set WANDB_MODE (or `mode`)."""

    enabled: bool = True
    project: str = "spin-loop"
    entity: str | None = None
    mode: str | None = None  # None: $WANDB_MODE if set, else "offline"
    tags: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    """A training run. `store` None = `<run_dir>/fits.lmdb`; `run_dir` None = `runs/<name>`."""

    name: str = "default"
    seed: int = 0
    device: str = "auto"  # auto = cuda when available
    torch_threads: int = 0  # trainer's intra-op threads; 0 = torch's default
    run_dir: str | None = None
    store: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    body: BodyConfig = field(default_factory=BodyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    fitting: FittingConfig = field(default_factory=FittingConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)

    def __post_init__(self) -> None:
        if self.optim.amp in ("False", "false"):  # YAML 1.1 reads a bare `off` as a boolean
            self.optim.amp = "off"
        checks = [
            (_is_device(self.device), "device", "auto, cpu, cuda or cuda:N"),
            (self.data.source in ("synthetic", "files"), "data.source", "synthetic or files"),
            (self.optim.amp in AMP_MODES, "optim.amp", " or ".join(AMP_MODES)),
            (self.optim.schedule in SCHEDULES, "optim.schedule", " or ".join(SCHEDULES)),
            (self.data.batch_size >= 1, "data.batch_size", "1 or more"),
            (self.data.num_workers >= 0, "data.num_workers", "0 or more"),
            (self.rounds.num_rounds >= 1, "rounds.num_rounds", "1 or more"),
            (self.rounds.steps_per_round >= 1, "rounds.steps_per_round", "1 or more"),
            (self.rounds.checkpoint_every >= 1, "rounds.checkpoint_every", "1 or more"),
            (self.model.iterations >= 1, "model.iterations", "1 or more"),
            (self.model.img_res >= 32, "model.img_res", "32 or more"),
            (self.optim.lr > 0, "optim.lr", "above 0"),
        ]
        for ok, key, fix in checks:
            if not ok:
                raise UserError(f"Config key {key} has an invalid value; set it to {fix}.")
        representation = check_representation(self.data.synthetic.representation)
        if representation != "rgb" and self.data.source != "synthetic":
            raise UserError(f"Config key data.synthetic.representation is {representation!r} but data.source "
                            "is 'files'; only the synthetic renderer has part maps, set it to rgb.")
        # The network's first conv follows the input representation (one home: the data config).
        self.model.in_channels = representation_channels(representation)
        if self.data.source == "files" and (not self.data.train or self.data.test is None):
            raise UserError("Config data.source is 'files' but data.train or data.test is empty; list the "
                            "SPIN-format datasets there (name, annotations, images or h5).")


def _is_device(name: str) -> bool:
    """`auto`, `cpu`, `mps`, `cuda` or `cuda:N` (what the trainer can run on)."""
    kind, _, index = str(name).partition(":")
    return name in ("auto", "cpu", "mps", "cuda") or (kind == "cuda" and index.isdigit())


def config_from_dict(values: dict) -> TrainConfig:
    """A `TrainConfig` from its `dataclasses.asdict` form (as saved in checkpoints)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(values)))
