"""Each preset has exactly the parameters of the official architecture, counted from its design.

The count below is derived layer by layer from the official STARK definition (torchvision ResNet
trunk to layer3 with frozen BN as buffers (or trainable BN: 2 parameters per channel), 1x1 bottleneck, DETR post-norm transformer with a final
decoder LayerNorm only, one query embedding, corner head of Conv3x3+BN(+ReLU) x4 + 1x1 per branch,
3-layer MLP score head). It shares nothing with the modules it checks.
Published figures for comparison (paper, Table 8): STARK-ST50 28.23M, STARK-ST101 47.17M.
"""
from __future__ import annotations

import pytest

from tests.support.model_fixtures import preset_model_config
from stark.model.stark import build_stark


def resnet_trunk_params(name: str, trainable_norm: bool = False) -> int:
    bottleneck = name in ("resnet50", "resnet101")
    blocks = {"resnet18": (2, 2, 2), "resnet34": (3, 4, 6), "resnet50": (3, 4, 6), "resnet101": (3, 4, 23)}[name]
    bn = 2 if trainable_norm else 0  # per channel: weight and bias (frozen BN: buffers only)
    total = 3 * 64 * 7 * 7 + bn * 64  # conv1 (no bias) and its BN
    in_ch = 64
    # layer3's stride does not matter here: dilating it (DC5) changes no parameter
    for width, count, stride in zip((64, 128, 256), blocks, (1, 2, 2)):
        out_ch = width * (4 if bottleneck else 1)
        for i in range(count):
            if bottleneck:
                total += in_ch * width + 9 * width * width + width * out_ch + bn * (2 * width + out_ch)
            else:
                total += 9 * in_ch * width + 9 * width * width + bn * 2 * width
            if i == 0 and (stride != 1 or in_ch != out_ch):
                total += in_ch * out_ch + bn * out_ch  # downsample 1x1 conv and its BN
            in_ch = out_ch
    return total


def official_param_count(cfg) -> int:
    d, ff = cfg.transformer.d_model, cfg.transformer.dim_feedforward
    channels = 1024 if cfg.backbone.name in ("resnet50", "resnet101") else 256
    attention = 3 * d * d + 3 * d + d * d + d  # in_proj + out_proj
    ffn = d * ff + ff + ff * d + d
    encoder_layer = attention + ffn + 2 * 2 * d
    decoder_layer = 2 * attention + ffn + 3 * 2 * d
    c = cfg.head.corner_channels
    widths = [d, c, c // 2, c // 4, c // 8]
    branch = sum(9 * a * b + b + 2 * b for a, b in zip(widths[:-1], widths[1:])) + widths[-1] + 1
    total = (resnet_trunk_params(cfg.backbone.name, cfg.backbone.norm == "batch")
             + channels * d + d  # bottleneck
             + cfg.transformer.enc_layers * encoder_layer
             + cfg.transformer.dec_layers * decoder_layer + 2 * d  # final decoder norm
             + d  # query embedding
             + 2 * branch)
    if cfg.variant == "ST" and cfg.head.score_input == "evidence":
        # 16 statistics, standardised by a BatchNorm (weight + bias), then 64-wide layers
        n, h = 16, 64
        total += 2 * n + (n * h + h) + (h * h + h) * (cfg.head.score_layers - 2) + h + 1
    elif cfg.variant == "ST":
        extra = 2 if cfg.head.score_input == "query_and_corners" else 0  # the two corner confidences
        total += (d * d + d) * (cfg.head.score_layers - 1) + extra * d + d + 1
    return total


@pytest.mark.parametrize("preset", ["stark_s50", "stark_st50", "stark_st101", "stark_tiny"])
def test_parameter_count_equals_the_official_design(preset):
    cfg = preset_model_config(preset)
    model = build_stark(cfg)
    assert sum(p.numel() for p in model.parameters()) == official_param_count(cfg)


def test_full_presets_round_to_the_published_sizes():
    assert round(official_param_count(preset_model_config("stark_st50")) / 1e6, 2) == 28.23
    assert round(official_param_count(preset_model_config("stark_st101")) / 1e6, 2) == 47.17
