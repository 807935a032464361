"""The score head's `evidence` input: statistics of the corner maps, the query's similarity map and the
box's match with the template, each defined on hand cases, and a network that reads them."""
from __future__ import annotations

import math

import pytest
import torch

from stark.model.score_evidence import (EVIDENCE_FEATURES, box_cells, corner_spread, localisation_evidence,
                                        template_target_cells)
from stark.model.score_head import EvidenceMLP
from stark.model.stark import build_stark
from tests.support.model_fixtures import crops, preset_model_config


def one_hot(side: int, row: int, col: int) -> torch.Tensor:
    prob = torch.zeros(1, side * side)
    prob[0, row * side + col] = 1
    return prob


def test_a_corner_map_sure_of_one_cell_has_no_spread_and_a_uniform_one_the_spread_of_uniform_cells():
    assert corner_spread(one_hot(8, 2, 5), 8).tolist() == [[0.0, 0.0]]
    uniform = torch.full((1, 64), 1 / 64)
    expected = math.sqrt((8 ** 2 - 1) / 12)  # standard deviation of 8 equally likely cells
    assert corner_spread(uniform, 8)[0].tolist() == pytest.approx([expected, expected], rel=1e-5)


def test_spread_is_measured_along_each_axis_separately():
    prob = torch.zeros(1, 16)
    prob[0, 1 * 4 + 0] = prob[0, 1 * 4 + 3] = 0.5  # row 1, columns 0 and 3: spread in x only
    assert corner_spread(prob, 4)[0].tolist() == pytest.approx([1.5, 0.0])


def test_box_cells_are_the_cells_whose_centres_lie_in_the_box():
    box = torch.tensor([[0.35, 0.5, 0.5, 0.3]])  # x 0.1..0.6, y 0.35..0.65 on a 4x4 map
    inside = box_cells(box, 4).view(4, 4)
    want = torch.zeros(4, 4)
    want[1:3, 0:2] = 1  # centres at 0.125, 0.375 in x; 0.375, 0.625 in y
    assert torch.equal(inside, want)


def test_a_box_that_holds_no_cell_centre_counts_every_cell():
    degenerate = torch.tensor([[0.5, 0.5, -0.01, 0.02]])  # crossed corners: negative width
    assert box_cells(degenerate, 4).sum() == 16


@pytest.mark.parametrize("side, factor, rows", [(8, 2.0, (2, 6)), (16, 2.0, (4, 12)), (4, 4.0, (1, 3))])
def test_the_template_target_is_the_centre_one_factor_th_of_the_template_map(side, factor, rows):
    cells = template_target_cells(side, factor).view(side, side)
    want = torch.zeros(side, side)
    want[rows[0]:rows[1], rows[0]:rows[1]] = 1
    assert torch.equal(cells, want)


def evidence_inputs(batch: int = 3, side: int = 4, d: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    tl = torch.randn(batch, side * side, generator=gen).softmax(1)
    br = torch.randn(batch, side * side, generator=gen).softmax(1)
    similarity = torch.randn(batch, side * side, generator=gen)
    box = torch.tensor([[0.5, 0.5, 0.5, 0.5]]).repeat(batch, 1)
    search = torch.randn(batch, side * side, d, generator=gen)
    templates = [torch.randn(batch, 16, d, generator=gen) for _ in range(2)]
    return tl, br, similarity, box, search, templates, template_target_cells(4, 2.0)


SIZES = {"side": 4, "d_model": 8}


def test_the_evidence_has_its_documented_width_and_is_finite():
    evidence = localisation_evidence(*evidence_inputs(), **SIZES)
    assert evidence.shape == (3, EVIDENCE_FEATURES) and evidence.dtype == torch.float32
    assert torch.isfinite(evidence).all()


def test_a_box_whose_search_memory_is_the_template_targets_matches_it_with_cosine_one():
    tl, br, similarity, box, search, templates, cells = evidence_inputs(batch=1)
    target = torch.randn(8)
    templates[0][0, cells.bool()] = target  # the initial template's target cells all hold one vector
    search[0, box_cells(box, 4)[0].bool()] = 2 * target  # and so do the search cells inside the box
    evidence = localisation_evidence(tl, br, similarity, box, search, templates, cells, **SIZES)
    assert evidence[0, 12].item() == pytest.approx(1.0, abs=1e-5)  # initial template's match
    assert evidence[0, 13].item() < 0.9  # the dynamic template holds other vectors


def test_a_one_template_network_repeats_its_match_so_the_width_stays_fixed():
    tl, br, similarity, box, search, templates, cells = evidence_inputs(batch=2)
    evidence = localisation_evidence(tl, br, similarity, box, search, templates[:1], cells, **SIZES)
    assert evidence.shape == (2, EVIDENCE_FEATURES) and torch.equal(evidence[:, 12], evidence[:, 13])


def test_a_network_reading_the_evidence_scores_each_search_crop_and_trains_only_its_head_in_stage_2():
    cfg = preset_model_config("stark_tiny", **{"head.score_input": "evidence"})
    torch.manual_seed(0)
    model = build_stark(cfg)
    assert isinstance(model.score_head, EvidenceMLP)
    out = model.eval()(*crops(cfg, batch=2))
    assert out["pred_logits"].shape == (2,) and torch.isfinite(out["pred_logits"]).all()
    trained = {name for name, _ in model.stage_parameters(2)}
    assert trained and all(name.startswith("score_head.") for name in trained)
    assert "score_head.input_norm.weight" in trained
    assert not any(name.startswith("score_head.") for name, _ in model.stage_parameters(1))


def test_under_bf16_autocast_the_score_is_computed_in_fp32():
    cfg = preset_model_config("stark_tiny", **{"head.score_input": "evidence"})
    model = build_stark(cfg).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*crops(cfg, batch=2))
    assert out["pred_logits"].dtype == torch.float32
