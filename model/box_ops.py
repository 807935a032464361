"""Box format conversions, IoU and generalised IoU. Every function names its box format.

xywh: top-left corner + size; xyxy: corners; cxcywh: centre + size. Shapes [..., 4].
"""
from __future__ import annotations

import torch


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1), dim=-1)


def box_xywh_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    return box_xyxy_to_cxcywh(box_xywh_to_xyxy(boxes))


def box_cxcywh_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    return box_xyxy_to_xywh(box_cxcywh_to_xyxy(boxes))


def box_area_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def iou_and_union_xyxy(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise IoU and union area of two aligned sets of boxes, [..., 4] each -> [...]."""
    top_left = torch.maximum(boxes_a[..., :2], boxes_b[..., :2])
    bottom_right = torch.minimum(boxes_a[..., 2:], boxes_b[..., 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area_xyxy(boxes_a) + box_area_xyxy(boxes_b) - inter
    return inter / union.clamp(min=1e-12), union


def box_iou_xyxy(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    return iou_and_union_xyxy(boxes_a, boxes_b)[0]


def generalized_box_iou_xyxy(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Element-wise GIoU = IoU - (enclosing area - union) / enclosing area, in [-1, 1]."""
    iou, union = iou_and_union_xyxy(boxes_a, boxes_b)
    enc_tl = torch.minimum(boxes_a[..., :2], boxes_b[..., :2])
    enc_br = torch.maximum(boxes_a[..., 2:], boxes_b[..., 2:])
    enc_wh = (enc_br - enc_tl).clamp(min=0)
    enclosing = (enc_wh[..., 0] * enc_wh[..., 1]).clamp(min=1e-12)
    return iou - (enclosing - union) / enclosing
