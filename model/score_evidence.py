"""What the corner head and the encoder already know about whether a box is right, as a few numbers.

The tiny network's target embedding carries almost no reliability signal (a score MLP on it scored ROC
AUC 0.74 for "IoU > 0.5" on unseen footage), but the maps around the box do. Measured on the starter's
own tracked frames (linear probes fit on "train" photographs, scored on "test" ones), one number each:
corner-map spreads 0.80-0.81, mean query similarity inside the box 0.83, cosine between the box's
search memory and the template's target memory 0.82; together 0.86-0.88. `score_input: evidence` feeds
these to the score MLP instead of the embedding. All of it is computed in fp32 from tensors the forward
pass has anyway, in plain tensor ops, so it exports to ONNX with the rest of the graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

EVIDENCE_FEATURES = 16  # the columns of localisation_evidence, in its order


def corner_spread(prob: torch.Tensor, side: int) -> torch.Tensor:
    """prob [B, S*S] (row-major cells) -> [B, 2]: the standard deviation of the map's x and y, in cells."""
    cells = torch.arange(side, device=prob.device, dtype=prob.dtype) + 0.5
    grid = prob.view(-1, side, side)
    spreads = []
    for marginal in (grid.sum(1), grid.sum(2)):  # over rows -> x, over columns -> y
        mean = (marginal * cells).sum(1, keepdim=True)
        spreads.append(((marginal * (cells - mean) ** 2).sum(1)).clamp_min(0).sqrt())
    return torch.stack(spreads, dim=1)


def box_cells(box_cxcywh: torch.Tensor, side: int) -> torch.Tensor:
    """[B, 4] normalised boxes -> [B, S*S] float 1/0: which cell centres lie inside each box; a box that
    holds no centre (degenerate corners) counts every cell, so the means below stay defined."""
    centres = (torch.arange(side, device=box_cxcywh.device, dtype=box_cxcywh.dtype) + 0.5) / side
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    cx, cy = cx.reshape(1, -1), cy.reshape(1, -1)
    inside = (((cx - box_cxcywh[:, 0:1]).abs() <= box_cxcywh[:, 2:3] / 2)
              & ((cy - box_cxcywh[:, 1:2]).abs() <= box_cxcywh[:, 3:4] / 2)).to(box_cxcywh.dtype)
    return torch.where(inside.sum(1, keepdim=True) > 0, inside, torch.ones_like(inside))


def template_target_cells(side: int, factor: float, device=None) -> torch.Tensor:
    """[S*S] float 1/0: the template map's cells covering the target, the centre 1/factor of the crop
    (at least one cell)."""
    half = max(1, round(side / factor / 2))
    lo, hi = max(0, side // 2 - half), min(side, side - side // 2 + half)
    cells = torch.zeros(side, side, device=device)
    cells[lo:hi, lo:hi] = 1
    return cells.flatten()


def localisation_evidence(top_left: torch.Tensor, bottom_right: torch.Tensor, similarity: torch.Tensor,
                          box_cxcywh: torch.Tensor, search_memory: torch.Tensor,
                          template_memories: list[torch.Tensor], template_cells: torch.Tensor, side: int,
                          d_model: int) -> torch.Tensor:
    """-> [B, EVIDENCE_FEATURES] fp32.

    top_left, bottom_right: corner probabilities [B, S*S]; similarity: query . search token [B, S*S];
    box_cxcywh: the predicted box [B, 4]; search_memory [B, S*S, d]; template_memories: each template's
    encoder output [B, Lz, d] (initial first); template_cells [Lz]: the template's target cells; side: S.
    The sizes are passed as ints, not read from shapes, so that an ONNX trace keeps them constants.
    Columns: log peak of each corner map (2), their x/y spreads (4), similarity's softmax mass inside the
    box, its mean inside and its maximum as z-scores, its raw mean inside and outside and raw maximum
    (scaled by 1/sqrt(d)), the cosine between the box's mean search memory and each template's target
    memory (2, dynamic template's second), log width and height of the box.
    """
    top_left, bottom_right, similarity = top_left.float(), bottom_right.float(), similarity.float()
    box, search_memory = box_cxcywh.float(), search_memory.float()
    scale = d_model ** -0.5
    peaks = torch.stack((top_left.amax(1), bottom_right.amax(1)), dim=1).clamp_min(1e-6).log()
    spreads = torch.cat((corner_spread(top_left, side), corner_spread(bottom_right, side)), dim=1)

    inside = box_cells(box, side)
    outside = 1 - inside
    mass = (similarity.softmax(dim=1) * inside).sum(1)
    mean_in = (similarity * inside).sum(1) / inside.sum(1)
    mean_out = (similarity * outside).sum(1) / outside.sum(1).clamp_min(1)
    peak = similarity.amax(1)
    centre, spread = similarity.mean(1), similarity.std(1).clamp_min(1e-6)

    box_memory = (search_memory * inside.unsqueeze(-1)).sum(1) / inside.sum(1, keepdim=True)  # [B, d]
    weights = template_cells.to(search_memory.dtype).view(1, -1, 1)
    matches = [F.cosine_similarity(box_memory, (m.float() * weights).sum(1) / weights.sum(), dim=1)
               for m in template_memories]
    if len(matches) == 1:
        matches = matches * 2  # STARK-S has one template: the same column twice keeps the width fixed
    sizes = box[:, 2:4].clamp_min(1e-3).log()
    return torch.cat([peaks, spreads, torch.stack([mass, (mean_in - centre) / spread, (peak - centre) / spread,
                                                   mean_in * scale, mean_out * scale, peak * scale,
                                                   *matches[:2]], dim=1), sizes], dim=1)
