from dataclasses import dataclass, field

import pytest

from spin.config_loading import config_to_yaml, load_config
from spin.errors import UserError


@dataclass
class _Optim:
    lr: float = 5e-5
    batch_size: int = 64


@dataclass
class _Config:
    name: str = "default"
    optim: _Optim = field(default_factory=_Optim)


def test_yaml_and_overrides_merge_into_typed_dataclass(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: paper\noptim:\n  lr: 0.001\n")
    config = load_config(_Config, path, ["optim.batch_size=8"])
    assert isinstance(config, _Config) and isinstance(config.optim, _Optim)
    assert (config.name, config.optim.lr, config.optim.batch_size) == ("paper", 0.001, 8)
    assert "batch_size: 8" in config_to_yaml(config)


@pytest.mark.parametrize("override", ["optim.nope=1", "optim.batch_size=many", "no_equals_sign"])
def test_bad_override_is_one_clear_sentence(override):
    with pytest.raises(UserError, match=override.split("=")[0]):
        load_config(_Config, None, [override])


def test_unknown_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(UserError, match="bad.yaml"):
        load_config(_Config, path)


def test_missing_config_file_names_the_path(tmp_path):
    with pytest.raises(UserError, match="missing.yaml"):
        load_config(_Config, tmp_path / "missing.yaml")


@dataclass
class _Modes:
    mode: str = "async"
    enabled: bool = True


def test_off_and_on_stay_strings_as_in_yaml_1_2(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("mode: off\nenabled: false\n")
    assert load_config(_Modes, path) == _Modes(mode="off", enabled=False)
    assert load_config(_Modes, None, ["mode=off", "enabled=true"]) == _Modes(mode="off", enabled=True)
