"""The feature extractor: a ResNet trunk cut after layer3, with its padding mask carried along."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.config import BackboneConfig
from stark.model.resnet import load_torchvision_weights, resnet_trunk, stage_of


class Backbone(nn.Module):
    """images [B, 3, H, W] + mask [B, H, W] (True = padding) -> features [B, C, H/s, W/s] + mask [B, H/s, W/s],
    s = self.stride (16; 8 with layer3 dilated)."""

    def __init__(self, body: nn.Module, trainable_stages: list[str]):
        super().__init__()
        self.body = body
        self.num_channels: int = body.num_channels
        self.stride: int = body.stride
        self.trainable_stages = tuple(trainable_stages)
        # only the listed stages train; a frozen BatchNorm has no parameters at all (buffers only),
        # a trainable one ("batch") trains with its stage
        for name, param in self.body.named_parameters():
            param.requires_grad_(self.trains(name))

    def trains(self, body_name: str) -> bool:
        """Whether the trunk parameter / module `body_name` (e.g. "layer1.0.bn1.weight") is trained."""
        return stage_of(body_name) in self.trainable_stages

    def train(self, mode: bool = True) -> "Backbone":
        """Stages that do not train stay in eval mode: their BatchNorm statistics must not drift either."""
        super().train(mode)
        for name, module in self.body.named_children():
            if not self.trains(name):
                module.eval()
        return self

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images)
        # Nearest-neighbour downsampling of the padding mask to the feature grid.
        feat_mask = F.interpolate(mask[:, None].float(), size=features.shape[-2:]).to(torch.bool)[:, 0]
        return features, feat_mask


def build_backbone(cfg: BackboneConfig) -> Backbone:
    body = resnet_trunk(cfg.name, cfg.norm, cfg.dilate_layer3)
    if cfg.weights:
        load_torchvision_weights(body, cfg.weights)
    return Backbone(body, cfg.trainable_stages)
