"""The HMR / boosting configs: valid against TrainConfig, except the keys the trainer integration adds."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from spin.adversarial import AdversarialConfig
from spin.config import TrainConfig
from spin.config_loading import _parse_yaml, load_config
from spin.data.representations import check_representation

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# Keys that need TrainConfig fields added with the trainer integration (one home: this table).
INTEGRATION_KEYS = {("adversarial",), ("data", "synthetic", "representation"),
                    ("data", "synthetic", "joints3d_for_all")}


def split_integration_keys(values: dict) -> tuple[dict, dict]:
    """(values TrainConfig knows today, {key path: value} of the integration keys)."""
    extra = {}
    for path in INTEGRATION_KEYS:
        node = values
        for part in path[:-1]:
            node = node.get(part, {})
        if path[-1] in node:
            extra[path] = node.pop(path[-1])
    return values, extra


def load(name: str) -> tuple[TrainConfig, dict]:
    values, extra = split_integration_keys(_parse_yaml((CONFIGS / name).read_text()))
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.create(values))
    return OmegaConf.to_object(merged), extra


@pytest.mark.parametrize("name", ["hmr.yaml", "hmr_unpaired.yaml"])
def test_hmr_configs_turn_fitting_off_and_the_adversarial_prior_on(name):
    config, extra = load(name)
    assert config.fitting.mode == "off"
    adversarial = AdversarialConfig(**extra[("adversarial",)])
    assert adversarial.enabled and adversarial.lr == 1e-4 and adversarial.weight_decay == 1e-4
    check_representation(extra[("data", "synthetic", "representation")])


def test_unpaired_hmr_has_no_3d_supervision():
    config, extra = load("hmr_unpaired.yaml")
    paired, _ = load("hmr.yaml")
    assert config.data.synthetic.gt_fraction == 0.0 and paired.data.synthetic.gt_fraction > 0
    assert extra[("data", "synthetic", "joints3d_for_all")] is False


def test_boosting_loads_with_todays_trainconfig_and_anchors_the_fits():
    config = load_config(TrainConfig, CONFIGS / "boosting.yaml")
    default = load_config(TrainConfig, CONFIGS / "default.yaml")
    assert config.fitting.smplify.anchor_weight > 0 and default.fitting.smplify.anchor_weight == 0
    assert config.fitting.mode != "off"
