"""A config file's `base:` parent: merged first, the file's own keys and the overrides win; a
missing base or a loop is one sentence naming the file."""

from __future__ import annotations

import pytest

from spin.config import TrainConfig
from spin.config_loading import config_to_yaml, load_config
from spin.errors import UserError


def test_a_file_holds_only_what_it_changes_over_its_base_chain(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\noptim: {lr: 0.002, warmup_steps: 7}\n"
                                          "data: {batch_size: 5}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("base: ../parent.yaml\nname: child\noptim: {lr: 0.003}\n")
    (tmp_path / "grandchild.yaml").write_text("base: sub/child.yaml\ndata: {batch_size: 9}\n")
    config = load_config(TrainConfig, tmp_path / "grandchild.yaml", ["optim.warmup_steps=3"])
    assert (config.name, config.optim.lr, config.data.batch_size, config.optim.warmup_steps) == (
        "child", 0.003, 9, 3)
    assert config.rounds == TrainConfig().rounds  # what no layer names stays the schema's default
    assert "base" not in config_to_yaml(config)  # a run's saved config is the resolved one


def test_a_missing_base_and_a_loop_are_one_sentence(tmp_path):
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\n")
    with pytest.raises(UserError, match="orphan.yaml names base: gone.yaml") as err:
        load_config(TrainConfig, tmp_path / "orphan.yaml")
    assert "\n" not in str(err.value)
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(UserError, match="loops"):
        load_config(TrainConfig, tmp_path / "a.yaml")


def test_a_bad_key_in_a_base_names_that_file(tmp_path):
    (tmp_path / "parent.yaml").write_text("optim: {learning_rate: 0.1}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\n")
    with pytest.raises(UserError, match="parent.yaml does not match the config schema"):
        load_config(TrainConfig, tmp_path / "child.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="not a mapping"):
        load_config(TrainConfig, tmp_path / "list.yaml")
