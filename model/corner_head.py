"""Corner head: two FCN branches give top-left and bottom-right probability maps; soft-argmax reads corners."""
from __future__ import annotations

import torch
from torch import nn

from stark.model.config import HeadConfig


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


def corner_branch(in_ch: int, channels: int) -> nn.Sequential:
    """channels -> channels/2 -> /4 -> /8 (Conv3x3-BN-ReLU each), then a 1x1 conv to one score map."""
    widths = [in_ch, channels, channels // 2, channels // 4, channels // 8]
    layers = [conv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:])]
    return nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, kernel_size=1))


class CornerHead(nn.Module):
    """fused search features [B, d, S, S] -> boxes_xyxy [B, 4], normalised to the search crop.

    Each map is a softmax over the S*S cells; a corner is the expectation of the cell coordinates
    under it. Cell (row r, col c) sits at (c / S, r / S): the cell's top-left, as in the official code.
    """

    def __init__(self, in_channels: int, channels: int, feat_size: int):
        super().__init__()
        self.feat_size = feat_size
        self.top_left = corner_branch(in_channels, channels)
        self.bottom_right = corner_branch(in_channels, channels)
        cells = torch.arange(feat_size, dtype=torch.float32) / feat_size
        self.register_buffer("coord_x", cells.repeat(feat_size), persistent=False)  # [S*S], col / S
        self.register_buffer("coord_y", cells.repeat_interleave(feat_size), persistent=False)  # row / S

    def soft_argmax(self, score_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """score_map [B, 1, S, S] -> expected (x, y), each [B], in fp32 whatever the autocast: under bf16 the
        expectation's matmul would round corners to ~2^-9 of the crop."""
        return self.expectation(self.probability(score_map))

    def probability(self, score_map: torch.Tensor) -> torch.Tensor:
        """score_map [B, 1, S, S] -> softmax over the cells [B, S*S], fp32."""
        with torch.autocast(score_map.device.type, enabled=False):
            return score_map.flatten(1).float().softmax(dim=1)

    def expectation(self, prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """prob [B, S*S] -> expected (x, y), each [B], fp32."""
        with torch.autocast(prob.device.type, enabled=False):
            return prob @ self.coord_x.float(), prob @ self.coord_y.float()

    def corner_probabilities(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fused [B, d, S, S] -> (top-left, bottom-right) probabilities, each [B, S*S]."""
        return self.probability(self.top_left(fused)), self.probability(self.bottom_right(fused))

    def boxes(self, top_left: torch.Tensor, bottom_right: torch.Tensor) -> torch.Tensor:
        """Corner probabilities -> boxes_xyxy [B, 4]."""
        x1, y1 = self.expectation(top_left)
        x2, y2 = self.expectation(bottom_right)
        return torch.stack((x1, y1, x2, y2), dim=1)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        return self.boxes(*self.corner_probabilities(fused))


def corner_confidence(top_left: torch.Tensor, bottom_right: torch.Tensor) -> torch.Tensor:
    """How sure the head is of each corner: log of each map's peak probability, [B, 2] (0 = certain)."""
    return torch.stack((top_left.amax(1), bottom_right.amax(1)), dim=1).clamp_min(1e-6).log()


def build_corner_head(cfg: HeadConfig, in_channels: int, feat_size: int) -> CornerHead:
    return CornerHead(in_channels, cfg.corner_channels, feat_size)
