"""Before any run: does each row's config resolve, and which datasets would a prefit fit.

Runs in the runner's process against the installed config schema (the same code `spin train` will
run), so a row whose keys the schema lacks yet ends in one line naming the key instead of a
traceback from a training subprocess.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spin.errors import UserError


@dataclass(frozen=True)
class Resolved:
    """What the runner needs of a run's config: its rounds, or why it cannot run."""

    num_rounds: int | None
    problem: str | None = None


def missing_key(key: str) -> bool:
    """True when the dotted `key` is not in the TrainConfig schema (a YAML file cannot add keys to it)."""
    from omegaconf import DictConfig, OmegaConf

    from spin.config import TrainConfig

    node = OmegaConf.structured(TrainConfig)
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return True
        node = node[part]
    return False


def resolve(config_path: Path, overrides: list[str], needs: str | None = None) -> Resolved:
    """Load the run's config as `spin train` would; a failure becomes one sentence.

    The sentence names the first override that fails on its own: a key the schema lacks ("needs
    <feature>: config key K does not exist yet"), or the loader's own message for a bad value.
    """
    from spin.config import TrainConfig
    from spin.config_loading import load_config

    try:
        config = load_config(TrainConfig, config_path, overrides)
        return Resolved(num_rounds=config.rounds.num_rounds)
    except UserError as whole:
        for item in overrides:
            key = item.split("=", 1)[0].strip()
            try:
                load_config(TrainConfig, config_path, [item])
            except UserError as err:
                if "=" in item and missing_key(key):
                    feature = f"needs {needs}: " if needs else ""
                    return Resolved(
                        None,
                        f"{feature}config key `{key}` does not exist in this version's "
                        f"config schema ({config_path.name}).",
                    )
                return Resolved(None, str(err))
        return Resolved(None, str(whole))


@dataclass(frozen=True)
class PrefitTarget:
    """One training dataset to fit before training: its annotations file and store dataset name."""

    annotations: Path
    dataset: str


def prefit_targets(config_path: Path, overrides: list[str]) -> tuple[list[PrefitTarget], list[str]]:
    """The run's training datasets (generating the synthetic one into the cache as the trainer
    would), and the `spin fits init` body-model options of its config."""
    from spin.body import BodyModel, resolve_body_files
    from spin.config import TrainConfig
    from spin.config_loading import load_config
    from spin.training.data_setup import SYNTHETIC_TRAIN, synthetic_files

    config = load_config(TrainConfig, config_path, overrides)
    body = config.body
    options: list[str] = ["--workers", str(config.fitting.num_actors)]
    for flag, value in (
        ("--body-model", body.body_model),
        ("--joint-regressor-extra", body.joint_regressor_extra),
        ("--prior", body.prior),
    ):
        if value:
            options += [flag, str(value)]
    if config.data.source == "synthetic":
        files = resolve_body_files(
            body.body_model, body.joint_regressor_extra, body.prior, body.mean_params
        )
        paths = synthetic_files(config.data.synthetic, BodyModel.from_files(files), files)
        return [PrefitTarget(Path(paths["train"]), SYNTHETIC_TRAIN)], options
    return [
        PrefitTarget(Path(spec.annotations), spec.name or Path(spec.annotations).stem)
        for spec in config.data.train
    ], options
