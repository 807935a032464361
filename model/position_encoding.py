"""DETR's normalised 2-D sine position encoding, computed per image from its padding mask."""
from __future__ import annotations

import math

import torch
from torch import nn


class PositionEncodingSine(nn.Module):
    """mask [B, H, W] (True = padding) -> positions [B, 2 * num_pos_feats, H, W] (y half, then x half).

    Coordinates are cumulative counts of valid cells, normalised to (0, 2*pi] by the valid extent,
    so a padded crop gets the same encoding over its valid part as an unpadded one of that size.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        valid = ~mask
        y = valid.cumsum(1, dtype=torch.float32)
        x = valid.cumsum(2, dtype=torch.float32)
        eps = 1e-6
        y = y / (y[:, -1:, :] + eps) * self.scale
        x = x / (x[:, :, -1:] + eps) * self.scale
        i = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        freqs = self.temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x[..., None] / freqs  # [B, H, W, F]
        pos_y = y[..., None] / freqs
        # interleave sin on even channels and cos on odd channels
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)  # [B, 2F, H, W]


def build_position_encoding(d_model: int) -> PositionEncodingSine:
    return PositionEncodingSine(num_pos_feats=d_model // 2)
