"""Box conversions round-trip; IoU and GIoU match values worked out by hand."""
from __future__ import annotations

import pytest
import torch

from stark.model import box_ops


def test_conversions_round_trip():
    xywh = torch.tensor([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 1.0, 2.0]])
    xyxy = box_ops.box_xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10, 20, 40, 60], [0, 0, 1, 2]]
    assert box_ops.box_xyxy_to_cxcywh(xyxy).tolist() == [[25, 40, 30, 40], [0.5, 1, 1, 2]]
    torch.testing.assert_close(box_ops.box_cxcywh_to_xywh(box_ops.box_xywh_to_cxcywh(xywh)), xywh)
    torch.testing.assert_close(box_ops.box_xyxy_to_xywh(xyxy), xywh)


@pytest.mark.parametrize("a, b, iou, giou", [
    # identical boxes
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0, 1.0),
    # half overlap: inter 2, union 6, enclosing 6 (0..3 x 0..2)
    ([0, 0, 2, 2], [1, 0, 3, 2], 2 / 6, 2 / 6),
    # disjoint: inter 0, union 2, enclosing 0..3 x 0..1 = 3 -> giou = 0 - (3 - 2) / 3
    ([0, 0, 1, 1], [2, 0, 3, 1], 0.0, -1 / 3),
    # nested: inter 1, union 4, enclosing 4
    ([0, 0, 2, 2], [0, 0, 1, 1], 0.25, 0.25),
    # diagonal corners touching: inter 0, union 2, enclosing 4 -> -0.5
    ([0, 0, 1, 1], [1, 1, 2, 2], 0.0, -0.5),
])
def test_iou_and_giou_match_hand_computed_values(a, b, iou, giou):
    a, b = torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)
    assert box_ops.box_iou_xyxy(a, b).item() == pytest.approx(iou)
    assert box_ops.generalized_box_iou_xyxy(a, b).item() == pytest.approx(giou)


def test_stage_one_loss_weights_l1_by_5_and_giou_by_2():
    from stark.model.losses import BoxLoss

    target = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    pred = torch.tensor([[0.6, 0.5, 0.2, 0.2]])  # shifted by 0.1 in x
    terms = BoxLoss()(pred, target)
    assert terms["l1"].item() == pytest.approx(0.05)  # |dx1| = |dx2| = 0.1 over 4 coordinates
    # IoU = 0.1*0.2 / (2*0.04 - 0.02) = 1/3; enclosing = 0.3*0.2 = 0.06 = union -> giou = 1/3
    assert terms["giou"].item() == pytest.approx(1 - 1 / 3)
    assert terms["loss"].item() == pytest.approx(5 * 0.05 + 2 * (2 / 3))
