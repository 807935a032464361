"""The feature extractor: a ResNet trunk cut after layer3, with its padding mask carried along."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.config import BackboneConfig
from stark.model.resnet import load_torchvision_weights, resnet_trunk


class Backbone(nn.Module):
    """images [B, 3, H, W] + mask [B, H, W] (True = padding) -> features [B, C, H/16, W/16] + mask [B, H/16, W/16]."""

    def __init__(self, body: nn.Module, trainable_stages: list[str]):
        super().__init__()
        self.body = body
        self.num_channels: int = body.num_channels
        self.trainable_stages = tuple(trainable_stages)
        # only the listed stages train; every BatchNorm is frozen by construction (buffers only).
        for name, param in self.body.named_parameters():
            param.requires_grad_(name.split(".")[0] in self.trainable_stages)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images)
        # Nearest-neighbour downsampling of the padding mask to the feature grid.
        feat_mask = F.interpolate(mask[:, None].float(), size=features.shape[-2:]).to(torch.bool)[:, 0]
        return features, feat_mask


def build_backbone(cfg: BackboneConfig) -> Backbone:
    body = resnet_trunk(cfg.name)
    if cfg.weights:
        load_torchvision_weights(body, cfg.weights)
    return Backbone(body, cfg.trainable_stages)
