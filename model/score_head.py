"""STARK-ST score head: an MLP on the decoder output (optionally with the corner head's confidence)
giving one reliability logit per query."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.config import HeadConfig


class MLP(nn.Module):
    """num_layers Linear layers with ReLU between them (none after the last)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


CORNER_CONFIDENCE_FEATURES = 2  # log peak probability of the top-left and of the bottom-right map


def build_score_head(cfg: HeadConfig, d_model: int) -> MLP:
    extra = CORNER_CONFIDENCE_FEATURES if cfg.score_input == "query_and_corners" else 0
    return MLP(d_model + extra, d_model, 1, cfg.score_layers)
