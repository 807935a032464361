"""Training losses. Stage 1: weighted L1 + GIoU on normalised boxes. Stage 2: BCE on the score logit."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.box_ops import box_cxcywh_to_xyxy, box_iou_xyxy, generalized_box_iou_xyxy


class BoxLoss(nn.Module):
    """pred_boxes and target boxes both cxcywh normalised to the search crop, [B, 4].

    Returns a dict of named terms plus 'loss', their weighted sum (official weights: L1 5, GIoU 2).
    """

    def __init__(self, weights: dict[str, float] | None = None):
        super().__init__()
        self.weights = weights or {"l1": 5.0, "giou": 2.0}

    def loss_l1(self, pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(box_cxcywh_to_xyxy(pred_cxcywh), box_cxcywh_to_xyxy(target_cxcywh))

    def loss_giou(self, pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor) -> torch.Tensor:
        pred, target = box_cxcywh_to_xyxy(pred_cxcywh), box_cxcywh_to_xyxy(target_cxcywh)
        return (1 - generalized_box_iou_xyxy(pred, target)).mean()

    def forward(self, pred_cxcywh: torch.Tensor, target_cxcywh: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {
            "l1": self.loss_l1(pred_cxcywh, target_cxcywh),
            "giou": self.loss_giou(pred_cxcywh, target_cxcywh),
        }
        terms["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        with torch.no_grad():
            terms["iou"] = box_iou_xyxy(box_cxcywh_to_xyxy(pred_cxcywh), box_cxcywh_to_xyxy(target_cxcywh)).mean()
        return terms


class ScoreLoss(nn.Module):
    """logits [B] and labels [B] (1 = target present in the search crop) -> {'bce', 'loss', 'accuracy'}."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        bce = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        with torch.no_grad():
            accuracy = ((logits > 0) == (labels > 0.5)).float().mean()
        return {"bce": bce, "loss": bce, "accuracy": accuracy}


def build_loss(stage: int) -> nn.Module:
    if stage == 1:
        return BoxLoss()
    if stage == 2:
        return ScoreLoss()
    raise ValueError(f"stage must be 1 or 2, got {stage}")
