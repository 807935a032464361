"""Reduced precision stays out of the box arithmetic, and the FLOP counter sees every matmul."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tests.support.model_fixtures import crops, preset_model_config
from stark.model.stark import build_stark
from stark.model.summary import count_flops


def test_boxes_under_bf16_autocast_come_back_in_fp32():
    cfg = preset_model_config("stark_tiny")
    model = build_stark(cfg).eval()
    templates, template_masks, search, search_mask = crops(cfg, batch=2)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(templates, template_masks, search, search_mask)
    assert out["pred_boxes"].dtype == torch.float32


def test_the_corner_expectation_is_not_rounded_to_bf16():
    cfg = preset_model_config("stark_tiny")
    head = build_stark(cfg).box_head
    side = head.feat_size
    score_map = torch.full((1, 1, side, side), -30.0)
    score_map[0, 0, 3, 5], score_map[0, 0, 3, 6] = 0.0, -0.01  # between two cells, not a bf16 value
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x, _ = head.soft_argmax(score_map)
    expected = torch.softmax(torch.tensor([0.0, -0.01]), 0) @ torch.tensor([5.0, 6.0]) / side
    assert x.dtype == torch.float32 and torch.isclose(x[0], expected, rtol=0, atol=1e-6)


def test_the_flop_count_includes_the_attention_inside_scaled_dot_product_attention():
    import stark.model.summary  # noqa: F401 - registers the CPU kernel's formula
    L, B, d, heads = 40, 2, 32, 4
    attention = nn.MultiheadAttention(d, heads).eval()
    x = torch.randn(L, B, d)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        attention(x, x, x, need_weights=False)
    projections = 2 * L * B * d * (3 * d) + 2 * L * B * d * d  # in_proj (q, k, v) and out_proj
    scores_and_mix = 2 * (2 * B * L * L * d)  # q k^T and attn v, over all heads together
    assert counter.get_total_flops() == projections + scores_and_mix


def test_st50_costs_26_gflop_per_tracked_frame():
    # the paper's figure for STARK-ST50 is 12.8 GMACs (Table 8) with 320/128 crops; this counts the
    # same network at 2 FLOPs per multiply-accumulate, attention included
    cfg = preset_model_config("stark_st50")
    report = count_flops(build_stark(cfg), cfg)
    assert round(report.per_frame / 1e9, 2) == 26.02
