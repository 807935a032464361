"""The corner head's soft-argmax reads the official coordinate convention: cell (r, c) -> (c / S, r / S)."""
from __future__ import annotations

import pytest
import torch

from stark.model.corner_head import CornerHead


@pytest.mark.parametrize("row, col", [(0, 0), (3, 5), (7, 7), (2, 6)])
def test_soft_argmax_of_a_one_hot_map_returns_that_cell(row, col):
    head = CornerHead(in_channels=8, channels=8, feat_size=8)
    score = torch.full((1, 1, 8, 8), -1e4)
    score[0, 0, row, col] = 1e4
    x, y = head.soft_argmax(score)
    assert x.item() == pytest.approx(col / 8) and y.item() == pytest.approx(row / 8)


def test_soft_argmax_of_a_uniform_map_is_the_mean_cell():
    head = CornerHead(in_channels=8, channels=8, feat_size=20)
    x, y = head.soft_argmax(torch.zeros(2, 1, 20, 20))
    expected = sum(range(20)) / 20 / 20
    torch.testing.assert_close(x, torch.full((2,), expected))
    torch.testing.assert_close(y, torch.full((2,), expected))


def test_branch_widths_follow_the_official_head():
    head = CornerHead(in_channels=256, channels=256, feat_size=20)
    convs = [m for m in head.top_left.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (256, 256, (3, 3)), (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 32, (3, 3)), (32, 1, (1, 1))]
