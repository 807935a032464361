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

    side = cfg.search_size // 16
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
    side = cfg.search_size // 16
    grid = tokens.mask.view(2, side, side)
    assert grid[0, 0].all() and not grid[0, -1].any()  # top third of image 0 is padding
    assert not grid[1].any()


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
