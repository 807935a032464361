"""Any accepted model argument gives back the same network: platform checkpoint or official file."""
from __future__ import annotations

import pytest
import torch

from tests.support.model_fixtures import official_model_config, crops, preset_model_config, randomise_statistics
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.model_loading import infer_official_config, load_model
from tests.model.test_official_checkpoint import official_state_dict, write_release_file


def outputs(model, cfg):
    with torch.no_grad():
        return model.eval()(*crops(cfg, batch=1))


def test_a_platform_checkpoint_round_trips_with_its_config_and_tracker_settings(tmp_path):
    cfg = load_config("stark_tiny")
    torch.manual_seed(1)
    model = build_stark(cfg.model)
    randomise_statistics(model)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), make_checkpoint(model, to_dict(cfg), tracker={"update_interval": 7}, step=3))

    loaded = load_model(str(path))
    assert loaded.kind == "platform" and loaded.tracker == {"update_interval": 7}
    assert loaded.model_cfg == cfg.model
    for key, value in outputs(model, cfg.model).items():
        torch.testing.assert_close(outputs(loaded.model, cfg.model)[key], value)


@pytest.mark.parametrize("preset", ["stark_s50", "stark_st101"])
def test_the_architecture_of_an_official_file_is_read_off_its_weights(preset):
    cfg = preset_model_config(preset)
    net = official_state_dict(build_stark(cfg))
    assert infer_official_config(net, preset_model_config("stark_st50")) == cfg


def test_an_official_file_loads_without_naming_a_preset(tmp_path):
    cfg = official_model_config("stark_tiny")
    torch.manual_seed(2)
    source = build_stark(cfg)
    randomise_statistics(source)
    path = tmp_path / "STARKST_ep0050.pth.tar"
    write_release_file(path, official_state_dict(source))

    loaded = load_model(str(path), base_cfg=cfg)  # base only supplies heads and crop sizes
    assert loaded.kind == "official"
    for key, value in outputs(source, cfg).items():
        torch.testing.assert_close(outputs(loaded.model, cfg)[key], value)


def test_a_missing_model_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.pt"):
        load_model(str(tmp_path / "nope.pt"))


def test_an_unrelated_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="neither a stark-platform checkpoint nor an official"):
        load_model(str(path))
