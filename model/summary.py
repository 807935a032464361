"""Parameter counts per part and FLOPs per tracked frame (templates cached, as the tracker runs)."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from stark.model.config import ModelConfig
from stark.model.stark import STARK, Tokens


# FlopCounterMode knows the CUDA kernels of scaled-dot-product attention but not the CPU one that
# nn.MultiheadAttention dispatches to here, so attention's two matmuls went uncounted (ST50: 24.30
# instead of 26.02 GFLOP per frame). The same formula as torch's for the CUDA kernels.
_CPU_SDPA = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _CPU_SDPA not in flop_registry:
    @register_flop_formula(_CPU_SDPA)
    def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


def parameter_counts(model: STARK) -> dict[str, dict[str, int]]:
    """{part: {'total': n, 'trainable': n}} for each part, in forward order, plus 'all'."""
    parts: dict[str, nn.Module] = {
        "backbone": model.backbone,
        "bottleneck": model.bottleneck,
        "transformer.encoder": model.transformer.encoder,
        "transformer.decoder": model.transformer.decoder,
        "target_query": model.target_query,
        "box_head": model.box_head,
    }
    if model.score_head is not None:
        parts["score_head"] = model.score_head
    table = {name: {"total": sum(p.numel() for p in m.parameters()),
                    "trainable": sum(p.numel() for p in m.parameters() if p.requires_grad)}
             for name, m in parts.items()}
    table["all"] = {"total": sum(p.numel() for p in model.parameters()),
                    "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    return table


def example_inputs(cfg: ModelConfig, batch: int = 1, device: str | torch.device = "cpu"):
    """Random template crops, a search crop and all-valid masks at the configured sizes."""
    zs, xs = cfg.template_size, cfg.search_size
    templates = [torch.randn(batch, 3, zs, zs, device=device) for _ in range(cfg.num_templates)]
    template_masks = [torch.zeros(batch, zs, zs, dtype=torch.bool, device=device) for _ in templates]
    search = torch.randn(batch, 3, xs, xs, device=device)
    search_mask = torch.zeros(batch, xs, xs, dtype=torch.bool, device=device)
    return templates, template_masks, search, search_mask


def cache_templates(model: STARK, templates, template_masks) -> list[Tokens]:
    with torch.no_grad():
        return [model.forward_backbone(z, m) for z, m in zip(templates, template_masks)]


@dataclass
class FlopReport:
    per_frame: int  # FLOPs of one tracked frame (search backbone + transformer + heads)
    per_template: int  # FLOPs of embedding one template (once at init, again at each update)


def count_flops(model: STARK, cfg: ModelConfig) -> FlopReport:
    """FLOPs as torch's FlopCounterMode counts them: 2 per multiply-accumulate (matmul and conv)."""
    # A frozen copy: FlopCounterMode's module tracker trips over parameters that require grad.
    model = copy.deepcopy(model).eval().requires_grad_(False)
    templates, template_masks, search, search_mask = example_inputs(cfg)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            cached = cache_templates(model, templates[:1], template_masks[:1])
        per_template = counter.get_total_flops()
        cached = cache_templates(model, templates, template_masks)
        with FlopCounterMode(display=False) as counter:
            model.forward_search(cached, search, search_mask)
        per_frame = counter.get_total_flops()
    return FlopReport(per_frame=per_frame, per_template=per_template)
