"""The HMR / NBF / boosting configs load into TrainConfig and say what their papers did."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitting_workers.smplify.config import DEFAULT_PRESET
from spin.config import TrainConfig
from spin.config_loading import load_config
from spin.data.representations import representation_channels

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def load(name: str, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(TrainConfig, CONFIGS / name, overrides)


@pytest.mark.parametrize("name", ["hmr.yaml", "hmr_unpaired.yaml"])
def test_hmr_configs_turn_fitting_off_and_the_adversarial_prior_on(name):
    config = load(name)
    assert config.fitting.mode == "off"
    adversarial = config.adversarial
    # HMR's discriminator-to-encoder learning-rate ratio (1e-4 / 1e-5), at this project's encoder lr
    assert adversarial.enabled and adversarial.lr == pytest.approx(10 * config.optim.lr)
    assert adversarial.weight_decay == 1e-4
    assert config.data.synthetic.representation == "rgb" and config.model.in_channels == 3
    assert not load("default.yaml").adversarial.enabled  # SPIN has no adversarial prior


def test_unpaired_hmr_has_no_3d_supervision():
    config, paired = load("hmr_unpaired.yaml"), load("hmr.yaml")
    assert config.data.synthetic.gt_fraction == 0.0 and paired.data.synthetic.gt_fraction > 0
    assert config.data.synthetic.joints3d_for_all is False


def test_nbf_config_feeds_part_maps_and_a_representation_sets_the_input_channels():
    config = load("nbf.yaml")
    assert config.data.synthetic.representation == "parts12"
    assert config.model.in_channels == representation_channels("parts12") == 12
    assert load("nbf.yaml", ["data.synthetic.representation=heatmaps14"]).model.in_channels == 14


def test_a_bad_representation_names_the_key():
    from spin.errors import UserError

    with pytest.raises(UserError, match="data.synthetic.representation"):
        load("default.yaml", ["data.synthetic.representation=parts_12"])


def test_boosting_names_the_anchored_setting():
    config = load("boosting.yaml")
    settings = config.fitting.smplify.resolved()
    assert settings.anchor_weight == DEFAULT_PRESET.anchor_weight > 0
    assert config.fitting.mode != "off"
    plain = load("boosting.yaml", ["fitting.smplify.anchor_weight=0"]).fitting.smplify.resolved()
    assert plain.anchor_weight == 0


def _flat(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


# What each paper's setting changes in the embedded default run (configs/default.yaml), and nothing else.
PAPER_KEYS = {
    "hmr.yaml": {"name", "fitting.mode", "adversarial.enabled"},
    "hmr_unpaired.yaml": {"name", "fitting.mode", "adversarial.enabled", "data.synthetic.gt_fraction"},
    "nbf.yaml": {"name", "fitting.mode", "data.synthetic.gt_fraction", "data.synthetic.joints3d_for_all",
                 "data.synthetic.representation", "model.in_channels"},
    "boosting.yaml": {"name", "fitting.smplify.anchor_weight", "fitting.smplify.anchor_sigma"},
}


@pytest.mark.parametrize("name", sorted(PAPER_KEYS))
def test_each_setting_differs_from_the_default_run_in_exactly_its_papers_keys(name):
    from dataclasses import asdict

    default, config = _flat(asdict(load("default.yaml"))), _flat(asdict(load(name)))
    assert default.keys() == config.keys()
    assert {key for key in config if config[key] != default[key]} == PAPER_KEYS[name]
