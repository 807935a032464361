"""STARK-ST score head: an MLP giving one reliability logit per query, on the decoder output (official),
that plus the corner head's confidence, or the localisation evidence of score_evidence.py."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.config import HeadConfig
from stark.model.score_evidence import EVIDENCE_FEATURES


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


class EvidenceMLP(MLP):
    """The MLP on `localisation_evidence`: its columns have unrelated scales (log probabilities, cells,
    raw similarities), so a BatchNorm standardises them first; stage 2 learns its statistics."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int):
        super().__init__(in_dim, hidden_dim, out_dim, num_layers)
        self.input_norm = nn.BatchNorm1d(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.input_norm(x))


CORNER_CONFIDENCE_FEATURES = 2  # log peak probability of the top-left and of the bottom-right map
EVIDENCE_HIDDEN = 64  # 16 numbers in: d_model-wide layers would only add room to overfit them


def build_score_head(cfg: HeadConfig, d_model: int) -> MLP:
    if cfg.score_input == "evidence":
        return EvidenceMLP(EVIDENCE_FEATURES, EVIDENCE_HIDDEN, 1, cfg.score_layers)
    extra = CORNER_CONFIDENCE_FEATURES if cfg.score_input == "query_and_corners" else 0
    return MLP(d_model + extra, d_model, 1, cfg.score_layers)
