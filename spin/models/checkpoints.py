"""Regressors from checkpoint files: this project's, or SPIN's released layout (its `hmr` network).

SPIN's `model_checkpoint.pt` is a dict whose `model` entry is the state dict of SPIN's `HMR`:
`conv1`, `bn1`, `layer1..4` (a torchvision-style ResNet-50), `fc1`, `fc2`, `decpose`, `decshape`,
`deccam` and the buffers `init_pose`, `init_shape`, `init_cam`. The network is the same as
`spin.models.Regressor` (SPIN's fixed 7x7 average pool equals the adaptive pool at 224 px), so
loading is a renaming of keys. The layout is recognised from the keys; `module.` prefixes
(DataParallel / DDP) are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spin.errors import UserError
from spin.models.regressor import POSE_6D, ModelConfig, Regressor

PROJECT, SPIN = "project", "spin"
# SPIN key prefix -> this project's (the ResNet's layers are numbered from 0 in `encoder.layers`).
_SPIN_TO_PROJECT = (
    ("conv1.", "encoder.stem.0."),
    ("bn1.", "encoder.stem.1."),
    ("layer1.", "encoder.layers.0."),
    ("layer2.", "encoder.layers.1."),
    ("layer3.", "encoder.layers.2."),
    ("layer4.", "encoder.layers.3."),
    ("fc1.", "fc1."),
    ("fc2.", "fc2."),
    ("decpose.", "dec_pose."),
    ("decshape.", "dec_betas."),
    ("deccam.", "dec_cam."),
    ("init_pose", "init_pose"),
    ("init_shape", "init_betas"),
    ("init_cam", "init_cam"),
)
# Blocks per ResNet stage -> torchvision name (the bottleneck ones have `conv3`).
_RESNETS = {(False, (2, 2, 2, 2)): "resnet18", (False, (3, 4, 6, 3)): "resnet34",
            (True, (3, 4, 6, 3)): "resnet50", (True, (3, 4, 23, 3)): "resnet101"}


@dataclass
class LoadedRegressor:
    """A regressor read from `path`: `layout` is "project" or "spin"; `config` the run's saved
    `TrainConfig` for this project's checkpoints, None for SPIN's."""

    model: Regressor
    layout: str
    path: Path
    config: Any = None


def _rename(state: dict[str, torch.Tensor], table: tuple[tuple[str, str], ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for old, new in table:
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            out[key] = value
    return out


def spin_to_project_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SPIN `hmr` state dict -> `Regressor` state dict (pure renaming)."""
    return _rename(state, _SPIN_TO_PROJECT)


def project_to_spin_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`Regressor` state dict -> SPIN `hmr` state dict (the inverse renaming)."""
    return _rename(state, tuple((new, old) for old, new in _SPIN_TO_PROJECT))


def state_layout(state: dict[str, Any]) -> str | None:
    """"spin", "project", or None for a state dict of neither network."""
    keys = set(state)
    if {"conv1.weight", "fc1.weight", "decpose.weight", "init_shape"} <= keys:
        return SPIN
    if {"encoder.stem.0.weight", "fc1.weight", "dec_pose.weight", "init_betas"} <= keys:
        return PROJECT
    return None


def _spin_backbone(state: dict[str, torch.Tensor], path: Path) -> str:
    bottleneck = "layer1.0.conv3.weight" in state
    blocks = tuple(
        len({m.group(1) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
    )
    name = _RESNETS.get((bottleneck, blocks))
    if name is None:
        raise UserError(f"Checkpoint {path} is in SPIN's layout but its ResNet has {blocks} blocks per "
                        "stage, which is none of resnet18/34/50/101.")
    return name


def _read(path: Path, map_location: str | torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"Checkpoint {path} does not exist; pass a .pt file of a run of this project "
                        "or SPIN's model_checkpoint.pt.")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"Checkpoint {path} cannot be read as a torch file ({type(err).__name__}).") from None


def _state_dict(raw: Any, path: Path) -> dict[str, torch.Tensor]:
    state = raw.get("model", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"Checkpoint {path} holds no network weights (no 'model' state dict); pass a "
                        "checkpoint of this project or SPIN's model_checkpoint.pt.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _project_config(raw: dict[str, Any], path: Path) -> Any:
    if "config" not in raw:
        raise UserError(f"Checkpoint {path} has this project's weights but no saved config, so its "
                        "architecture is unknown; use a checkpoint written by `spin train` "
                        "(runs/<name>/last.pt or round_XXX/checkpoint.pt).")
    from spin.config import config_from_dict

    try:
        return config_from_dict(raw["config"])
    except Exception as err:  # noqa: BLE001 - a damaged or foreign config
        raise UserError(f"Checkpoint {path}: its saved config cannot be read ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else ''}).") from None


def _load_weights(model: Regressor, state: dict[str, torch.Tensor], path: Path, what: str) -> None:
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    wrong = sorted(k for k in set(wanted) & set(state) if wanted[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        example = (missing or unexpected or wrong)[0]
        raise UserError(f"Checkpoint {path} does not fit {what} ({len(missing)} missing, {len(unexpected)} "
                        f"unexpected, {len(wrong)} wrongly shaped weights, e.g. '{example}'); it holds "
                        "another architecture — check model.backbone / model.hidden or the file.")
    model.load_state_dict(state)


def _placeholder_means() -> dict[str, np.ndarray]:
    # Overwritten by the checkpoint's init_* buffers.
    return {"pose": np.zeros(POSE_6D, np.float32), "shape": np.zeros(10, np.float32),
            "cam": np.zeros(3, np.float32)}


def read_regressor(path: str | Path, model_config: ModelConfig | None = None,
                   map_location: str | torch.device = "cpu") -> LoadedRegressor:
    """The regressor of a checkpoint of this project or of SPIN's layout (recognised from its keys).

    This project's checkpoints rebuild the architecture from their saved config; `model_config`,
    when given, must describe the same architecture (a clear error otherwise). SPIN's checkpoints
    take `model_config` (default `ModelConfig()`: 224 px, 3 iterations) for what the file does not
    say; backbone depth and hidden width are read from the weights.
    """
    path = Path(path).expanduser()
    raw = _read(path, map_location)
    state = _state_dict(raw, path)
    layout = state_layout(state)
    if layout == SPIN:
        base = model_config or ModelConfig()
        config = replace(base, backbone=_spin_backbone(state, path), hidden=int(state["fc1.weight"].shape[0]),
                         pretrained=None)
        if model_config is not None and model_config.backbone != config.backbone:
            raise UserError(f"Checkpoint {path} holds a {config.backbone} (SPIN layout) but the run's "
                            f"model.backbone is {model_config.backbone}; "
                            f"set model.backbone={config.backbone}.")
        model = Regressor(config, _placeholder_means())
        _load_weights(model, spin_to_project_state(state), path, f"SPIN's hmr with a {config.backbone}")
        return LoadedRegressor(model=model, layout=SPIN, path=path)
    if layout == PROJECT:
        saved = _project_config(raw, path)
        config = replace(saved.model, pretrained=None)
        if model_config is not None:
            for name in ("backbone", "hidden", "iterations"):
                if getattr(model_config, name) != getattr(config, name):
                    raise UserError(f"Checkpoint {path} has model.{name}={getattr(config, name)} but the "
                                    f"run asks for {getattr(model_config, name)}; drop the override or "
                                    "use a checkpoint of the same architecture.")
        model = Regressor(config, _placeholder_means())
        _load_weights(model, state, path, f"the saved config's {config.backbone} regressor")
        return LoadedRegressor(model=model, layout=PROJECT, path=path, config=saved)
    example = sorted(state)[0] if state else "none"
    raise UserError(f"Checkpoint {path} holds weights of another network (first key '{example}'); pass a "
                    "checkpoint of this project or SPIN's model_checkpoint.pt (its hmr layout).")


def load_regressor(path: str | Path, model_config: ModelConfig | None = None,
                   map_location: str | torch.device = "cpu") -> Regressor:
    """`read_regressor(...).model`: a `Regressor` (eval mode off; on CPU unless `map_location`)."""
    return read_regressor(path, model_config, map_location).model
