"""Load YAML configs into typed dataclasses, with `key=value` overrides from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from spin.errors import UserError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Merge the dataclass defaults of `cls`, the YAML file at `path` and `key=value` overrides.

    Unknown keys and values of the wrong type end in a `UserError` naming the file or override.
    Returns a plain instance of `cls` (not an OmegaConf proxy), so it pickles into Ray actors.
    """
    merged = OmegaConf.structured(cls)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"Config file {path} does not exist; pass an existing YAML file to --config.")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.load(path))
        except OmegaConfBaseException as err:
            raise UserError(f"Config file {path} does not match the config schema ({_first_line(err)}); "
                            "fix or remove that key.") from None
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"Override '{item}' is not of the form key=value; write it as e.g. optim.lr=1e-4.")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as err:
            raise UserError(f"Override '{item}' does not match the config schema ({_first_line(err)}); "
                            "check the key name and value type.") from None
    return OmegaConf.to_object(merged)


def config_to_yaml(config: object) -> str:
    """The full resolved config as YAML, for saving next to a run."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
