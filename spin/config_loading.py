"""Load YAML configs into typed dataclasses, with `key=value` overrides from the command line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
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
            merged = OmegaConf.merge(merged, OmegaConf.create(_parse_yaml(path.read_text()) or {}))
        except yaml.YAMLError as err:
            raise UserError(f"Config file {path} is not valid YAML ({_first_line(err)}); fix its syntax.") \
                from None
        except OmegaConfBaseException as err:
            raise UserError(f"Config file {path} does not match the config schema ({_first_line(err)}); "
                            "fix or remove that key.") from None
    for item in overrides or []:
        if "=" not in item:
            raise UserError(f"Override '{item}' is not of the form key=value; write e.g. optim.lr=0.01.")
        key, value = item.split("=", 1)
        try:
            nested: Any = _parse_yaml(value) if value.strip() else ""
            for part in reversed(key.strip().split(".")):
                nested = {part: nested}
            merged = OmegaConf.merge(merged, OmegaConf.create(nested))
        except (OmegaConfBaseException, yaml.YAMLError) as err:
            raise UserError(f"Override '{item}' does not match the config schema ({_first_line(err)}); "
                            "check the key name and value type.") from None
    return OmegaConf.to_object(merged)


def config_to_yaml(config: object) -> str:
    """The full resolved config as YAML, for saving next to a run."""
    return OmegaConf.to_yaml(OmegaConf.structured(config))


class _Yaml12Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false are booleans, so `mode: off` stays the string "off"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
