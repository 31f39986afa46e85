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

    A file may name a parent, `base: default.yaml` (relative to the file): the parent (and its own
    base, and so on) is merged first, so the file holds only what it changes.

    Unknown keys and values of the wrong type end in a `UserError` naming the file or override.
    Returns a plain instance of `cls` (not an OmegaConf proxy), so it pickles into Ray actors.
    """
    merged = OmegaConf.structured(cls)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"Config file {path} does not exist; pass an existing YAML file to --config.")
        for layer_path, layer in _layers(path):
            try:
                merged = OmegaConf.merge(merged, OmegaConf.create(layer))
            except OmegaConfBaseException as err:
                raise UserError(f"Config file {layer_path} does not match the config schema "
                                f"({_first_line(err)}); fix or remove that key.") from None
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


BASE_KEY = "base"  # a config file's parent: `base: default.yaml` (relative to the file) is merged first


def _layers(path: Path) -> list[tuple[Path, dict]]:
    """The YAML mappings a config file stands for, base first: the file's own keys over its `base:`
    chain's (each base path relative to the file naming it). A missing base, a loop or a file that is
    not a mapping is a UserError naming the file."""
    chain: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    current: Path | None = path
    while current is not None:
        resolved = current.resolve()
        if resolved in seen:
            raise UserError(f"Config file {current} is its own base (the {BASE_KEY}: chain from {path} "
                            f"loops); remove one of the {BASE_KEY}: keys.")
        seen.add(resolved)
        try:
            layer = _parse_yaml(current.read_text()) or {}
        except yaml.YAMLError as err:
            raise UserError(f"Config file {current} is not valid YAML ({_first_line(err)}); "
                            "fix its syntax.") from None
        if not isinstance(layer, dict):
            raise UserError(f"Config file {current} holds a {type(layer).__name__}, not a mapping of config "
                            "keys; write it as `section: {key: value}` YAML.")
        base = layer.pop(BASE_KEY, None)
        chain.append((current, layer))
        if base is None:
            break
        following = current.parent / str(base)
        if not following.is_file():
            raise UserError(f"Config file {current} names {BASE_KEY}: {base}, but {following} does not "
                            "exist; give a path relative to that file (e.g. base: default.yaml).")
        current = following
    return chain[::-1]


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
