"""Configs load from YAML presets with overrides and fail at load time, naming the key and file."""
from __future__ import annotations

import pytest

from stark.platform.experiment import ConfigError, load_config, preset_names


def test_presets_ship_with_the_package():
    assert {"stark_s50", "stark_st50", "stark_st101", "stark_tiny"} <= set(preset_names())


def test_official_preset_values():
    st50 = load_config("stark_st50").model
    assert (st50.variant, st50.backbone.name, st50.transformer.d_model, st50.transformer.enc_layers,
            st50.transformer.dec_layers, st50.transformer.nheads, st50.transformer.dim_feedforward) == \
        ("ST", "resnet50", 256, 6, 6, 8, 2048)
    assert (st50.template_size, st50.template_factor, st50.search_size, st50.search_factor) == (128, 2.0, 320, 5.0)
    assert load_config("stark_s50").model.variant == "S"
    assert load_config("stark_st101").model.backbone.name == "resnet101"


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config("stark_tiny", ["model.transformer.enc_layers=2", "model.backbone.weights=/w/r18.pth",
                                     "model.variant=S"])
    assert cfg.model.transformer.enc_layers == 2
    assert cfg.model.backbone.weights == "/w/r18.pth" and cfg.model.variant == "S"


def test_unknown_key_names_the_key_and_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  transformer:\n    d_modle: 64\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert "model.transformer.d_modle" in str(err.value) and str(path) in str(err.value)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="model.transformer.nheads: expected an integer"):
        load_config("stark_tiny", ["model.transformer.nheads=four"])


def test_invalid_value_is_caught_at_load_time():
    with pytest.raises(ConfigError, match="model.search_size"):
        load_config("stark_tiny", ["model.search_size=100"])
    with pytest.raises(ConfigError, match="model.variant"):
        load_config("stark_tiny", ["model.variant=X"])
    with pytest.raises(ConfigError, match="train.torch_threads"):
        load_config("stark_tiny", ["train.torch_threads=-1"])


def test_missing_config_lists_the_presets():
    with pytest.raises(ConfigError, match="stark_st50"):
        load_config("no_such_preset")


def test_malformed_override():
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config("stark_tiny", ["model.variant"])
