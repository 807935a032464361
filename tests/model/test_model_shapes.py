"""Every preset builds and maps crops of its configured sizes to one box (and, for ST, one score) per image."""
from __future__ import annotations

import pytest
import torch

from tests.support.model_fixtures import crops, preset_model_config
from stark.model.stark import build_stark


@pytest.mark.parametrize("preset, variant, channels", [
    ("stark_s50", "S", 1024), ("stark_st50", "ST", 1024), ("stark_st101", "ST", 1024), ("stark_tiny", "ST", 256),
])
def test_each_preset_maps_crops_to_boxes_and_scores(preset, variant, channels):
    cfg = preset_model_config(preset)
    model = build_stark(cfg).eval()
    templates, template_masks, search, search_mask = crops(cfg, batch=2)
    assert len(templates) == (1 if variant == "S" else 2)
    assert model.backbone.num_channels == channels

    with torch.no_grad():
        tokens = model.forward_backbone(search, search_mask)
        out = model(templates, template_masks, search, search_mask)

    side = cfg.search_size // (8 if cfg.backbone.dilate_layer3 else 16)
    assert tokens.feat.shape == (side * side, 2, cfg.transformer.d_model)
    assert tokens.mask.shape == (2, side * side) and tokens.pos.shape == tokens.feat.shape
    assert out["pred_boxes"].shape == (2, 4)
    assert ("pred_logits" in out) == (variant == "ST")
    if variant == "ST":
        assert out["pred_logits"].shape == (2,)
    # corners are expectations over cell coordinates, so they lie in [0, (S-1)/S]
    from stark.model.box_ops import box_cxcywh_to_xyxy
    corners = box_cxcywh_to_xyxy(out["pred_boxes"])
    assert (corners >= -1e-6).all() and (corners <= (side - 1) / side + 1e-6).all()


def test_padding_reaches_the_token_mask():
    cfg = preset_model_config("stark_tiny")
    model = build_stark(cfg).eval()
    _, _, search, search_mask = crops(cfg, batch=2)
    tokens = model.forward_backbone(search, search_mask)
    side = cfg.search_size // cfg.feat_stride
    grid = tokens.mask.view(2, side, side)
    assert grid[0, 0].all() and not grid[0, -1].any()  # top third of image 0 is padding
    assert not grid[1].any()


def test_a_dilated_layer3_doubles_the_feature_grid_with_the_same_weights():
    cfg = preset_model_config("stark_tiny")
    cfg.backbone.dilate_layer3, cfg.backbone.norm = False, "frozen"
    strided = build_stark(cfg)
    cfg.backbone.dilate_layer3 = True
    dilated = build_stark(cfg)
    assert cfg.search_feat_size == cfg.search_size // 8 and dilated.box_head.feat_size == cfg.search_feat_size
    dilated.load_state_dict(strided.state_dict())  # same parameters, same names
    _, _, search, search_mask = crops(cfg, batch=1)
    assert dilated.forward_backbone(search, search_mask).feat.shape[0] == (cfg.search_size // 8) ** 2
    assert strided.forward_backbone(search, search_mask).feat.shape[0] == (cfg.search_size // 16) ** 2


def test_a_trainable_backbone_norm_trains_with_its_stage_and_rests_with_a_frozen_one():
    cfg = preset_model_config("stark_tiny")
    cfg.backbone.norm, cfg.backbone.trainable_stages = "batch", ["layer2", "layer3"]
    model = build_stark(cfg).train_stage(1)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "backbone.body.layer2.0.bn1.weight" in trained and "backbone.body.layer3.1.bn2.bias" in trained
    assert "backbone.body.bn1.weight" not in trained and "backbone.body.layer1.0.bn1.weight" not in trained
    # frozen stages keep their statistics: their BatchNorms stay in eval mode while stage 1 trains
    assert not model.backbone.body.layer1.training and not model.backbone.body.bn1.training
    assert model.backbone.body.layer2.training


def test_a_tracked_frame_with_cached_templates_equals_the_full_forward():
    cfg = preset_model_config("stark_tiny")
    model = build_stark(cfg).eval()
    templates, template_masks, search, search_mask = crops(cfg)
    with torch.no_grad():
        cached = [model.forward_backbone(z, m) for z, m in zip(templates, template_masks)]
        per_frame = model.forward_search(cached, search, search_mask)
        full = model(templates, template_masks, search, search_mask)
    for key in full:
        torch.testing.assert_close(per_frame[key], full[key])


def test_wrong_number_of_templates_is_an_error():
    cfg = preset_model_config("stark_tiny")
    model = build_stark(cfg).eval()
    templates, template_masks, search, search_mask = crops(cfg)
    with pytest.raises(ValueError, match="2 template"):
        model(templates[:1], template_masks[:1], search, search_mask)
