"""Released STARK files load onto our modules, give the official outputs, and never execute pickled code."""
from __future__ import annotations

import os
import sys
import types

import pytest
import torch

from tests.support.model_fixtures import crops, preset_model_config, randomise_statistics
from tests.support.reference_stark import official_forward
from stark.model.official import load_official_checkpoint, our_key_to_official, read_release_file
from stark.model.stark import build_stark

# Keys quoted from the released files (issue 3); each must exist in a file we write in that layout.
OFFICIAL_KEYS = [
    "backbone.0.body.conv1.weight", "bottleneck.weight", "query_embed.weight",
    "transformer.encoder.layers.0.self_attn.in_proj_weight", "transformer.decoder.norm.weight",
    "box_head.conv1_tl.0.weight", "box_head.conv1_tl.1.running_mean", "box_head.conv5_br.weight",
    "cls_head.layers.2.bias",
]


def official_state_dict(model) -> dict[str, torch.Tensor]:
    return {our_key_to_official(k): v.clone() for k, v in model.state_dict().items()}


def write_release_file(path, net_state, marker_path=None):
    """Save like the official trainer: 'net' beside pickled objects of the official repo."""
    module = types.ModuleType("lib.train.admin.settings")

    class Settings:  # stands for the official settings object
        def __init__(self):
            self.script_name = "stark_st2"
            self.env = {"workspace_dir": "/somewhere"}

    class Payload:  # what a malicious file could carry: os.system on load
        def __reduce__(self):
            return (os.system, (f"touch {marker_path}",))

    for cls in (Settings, Payload):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
    module.Settings, module.Payload = Settings, Payload
    names = ["lib", "lib.train", "lib.train.admin"]
    for name in names:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[module.__name__] = module
    try:
        content = {"net": net_state, "net_type": "STARKST", "epoch": 50, "settings": Settings(),
                   "actor_type": "STARKSTActor", "stats": None}
        if marker_path is not None:
            content["payload"] = Payload()
        torch.save(content, path)
    finally:
        for name in [*names, module.__name__]:
            del sys.modules[name]


@pytest.mark.parametrize("preset", ["stark_st50", "stark_s50"])
def test_official_file_gives_the_official_outputs(tmp_path, preset):
    cfg = preset_model_config(preset)
    torch.manual_seed(0)
    source = build_stark(cfg)
    randomise_statistics(source)
    net = official_state_dict(source)
    path = tmp_path / "STARK_ep0050.pth.tar"
    write_release_file(path, net)

    model = load_official_checkpoint(path, cfg)
    templates, template_masks, search, search_mask = crops(cfg, batch=2)
    with torch.no_grad():
        ours = model(templates, template_masks, search, search_mask)
        official = official_forward(
            net, templates, template_masks, search, search_mask, backbone_name=cfg.backbone.name,
            d_model=cfg.transformer.d_model, nheads=cfg.transformer.nheads, enc_layers=cfg.transformer.enc_layers,
            dec_layers=cfg.transformer.dec_layers, search_size=cfg.search_size)
    assert set(ours) == set(official)
    for key in ours:
        torch.testing.assert_close(ours[key], official[key], atol=1e-4, rtol=0)


def test_written_layout_has_the_keys_of_the_released_files():
    keys = set(official_state_dict(build_stark(preset_model_config("stark_tiny"))))
    assert set(OFFICIAL_KEYS) <= keys


def test_foreign_objects_beside_the_weights_are_dropped_not_run(tmp_path):
    cfg = preset_model_config("stark_tiny")
    path = tmp_path / "release.pth.tar"
    write_release_file(path, official_state_dict(build_stark(cfg)))

    content = read_release_file(path)
    assert "dropped lib.train.admin.settings.Settings" in repr(content["settings"])
    assert content["epoch"] == 50 and content["net_type"] == "STARKST"
    load_official_checkpoint(path, cfg)


def test_a_file_that_would_run_code_on_load_is_refused_without_running_it(tmp_path):
    cfg = preset_model_config("stark_tiny")
    marker = tmp_path / "pwned"
    path = tmp_path / "tampered.pth.tar"
    write_release_file(path, official_state_dict(build_stark(cfg)), marker_path=marker)

    with pytest.raises(ValueError, match="posix.system"):
        load_official_checkpoint(path, cfg)
    assert not marker.exists()


def test_missing_and_unmapped_keys_are_named(tmp_path):
    cfg = preset_model_config("stark_tiny")
    net = official_state_dict(build_stark(cfg))
    del net["box_head.conv5_br.weight"]
    net["box_head.conv6_tl.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth.tar"
    write_release_file(path, net)
    with pytest.raises(ValueError) as err:
        load_official_checkpoint(path, cfg)
    message = str(err.value)
    assert "box_head.conv5_br.weight" in message and "box_head.conv6_tl.weight" in message
    assert str(path) in message


def test_a_stark_s_file_with_an_st_config_says_which_preset_to_use(tmp_path):
    s_cfg = preset_model_config("stark_tiny", variant="S")
    path = tmp_path / "STARKS.pth.tar"
    write_release_file(path, official_state_dict(build_stark(s_cfg)))
    with pytest.raises(ValueError, match="STARK-S"):
        load_official_checkpoint(path, preset_model_config("stark_tiny"))


def test_a_file_without_net_is_refused_clearly(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"model": {}}, path)
    with pytest.raises(ValueError, match="'net'"):
        read_release_file(path)
