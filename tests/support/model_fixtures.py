"""Small seeded helpers for model tests."""
from __future__ import annotations

import torch

from stark.model.config import ModelConfig
from stark.platform.experiment import load_config


def preset_model_config(name: str, **model_overrides) -> ModelConfig:
    overrides = [f"model.{k}={v}" for k, v in model_overrides.items()]
    return load_config(name, overrides).model


# the official network's choices: frozen BatchNorm, strided layer3, a score head on the decoder embedding
# alone (what every STARK release file is; the tiny preset trains otherwise)
OFFICIAL_NETWORK = ["model.backbone.norm=frozen", "model.backbone.dilate_layer3=false", "model.head.score_input=query"]


def official_model_config(name: str, **model_overrides) -> ModelConfig:
    """A preset's sizes with the official network's choices (OFFICIAL_NETWORK)."""
    return load_config(name, OFFICIAL_NETWORK + [f"model.{k}={v}" for k, v in model_overrides.items()]).model


def randomise_statistics(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm buffer non-trivial values so a mis-mapped key changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.copy_(0.5 + torch.rand(buf.shape, generator=gen))
            elif name.endswith("running_mean"):
                buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
            elif name.endswith(".weight") or name.endswith(".bias"):  # frozen BN affine (buffers)
                buf.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(buf.shape, generator=gen))
        for name, p in model.named_parameters():
            if "box_head" in name and name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


def crops(cfg: ModelConfig, batch: int = 2, seed: int = 0, pad_search: bool = True):
    """Seeded template/search crops; the search crop is partly padded to exercise the masks."""
    gen = torch.Generator().manual_seed(seed)
    zs, xs = cfg.template_size, cfg.search_size
    templates = [torch.randn(batch, 3, zs, zs, generator=gen) for _ in range(cfg.num_templates)]
    template_masks = [torch.zeros(batch, zs, zs, dtype=torch.bool) for _ in templates]
    template_masks[0][:, :, : zs // 4] = True
    search = torch.randn(batch, 3, xs, xs, generator=gen)
    search_mask = torch.zeros(batch, xs, xs, dtype=torch.bool)
    if pad_search:
        search_mask[0, : xs // 3] = True
        search[0, :, : xs // 3] = 0
    return templates, template_masks, search, search_mask
