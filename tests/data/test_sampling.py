"""Sample specs follow the official STARK samplers (pure functions: no Ray, no clips needed)."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.data_fixtures import S, ST, sequence_records, three_sequence_index
from stark.platform.data.config import DataConfig
from stark.platform.data.frame_index import FrameIndex, build_frame_index
from stark.platform.data.sampling import center_box, make_sample_spec


@pytest.fixture(scope="module")
def index() -> FrameIndex:
    return three_sequence_index()


def specs(index, n, stage, geometry=ST, cfg=DataConfig(), seed=0, epoch=0):
    return [make_sample_spec(index, i, cfg, geometry, stage, seed, epoch) for i in range(n)]


def test_stage_one_never_yields_an_absent_target(index):
    for spec in specs(index, 600, stage=1):
        assert spec.label == 1.0
        assert index.sequence_visible(spec.search.sequence)[spec.search.frame]
        assert all(index.sequence_visible(t.sequence)[t.frame] for t in spec.templates)


@pytest.mark.parametrize("ratio", [0.5, 0.3])
def test_stage_two_positive_share_follows_the_config(index, ratio):
    cfg = DataConfig(positive_ratio=ratio)
    labels = np.array([s.label for s in specs(index, 3000, stage=2, cfg=cfg)])
    assert abs(labels.mean() - ratio) < 0.03


def test_stage_two_negatives_are_absent_frames_around_a_fake_box_or_another_sequence(index):
    negatives = [s for s in specs(index, 800, stage=2) if s.label == 0.0]
    same_sequence = [s for s in negatives if s.search.sequence == s.templates[0].sequence]
    other_sequence = [s for s in negatives if s.search.sequence != s.templates[0].sequence]
    assert same_sequence and other_sequence  # sequence "b" has no absent frame
    for spec in same_sequence:
        assert not index.sequence_visible(spec.search.sequence)[spec.search.frame]
        np.testing.assert_array_equal(spec.search.target_box_xywh, center_box(640, 480))
    for spec in other_sequence:
        assert index.sequence_names[spec.templates[0].sequence].endswith("/b")
        assert index.sequence_visible(spec.search.sequence)[spec.search.frame]


def test_stark_s_search_frame_comes_within_max_gap_after_the_template(index):
    cfg = DataConfig(max_gap=30)
    for spec in specs(index, 400, stage=1, geometry=S, cfg=cfg):
        (template,) = spec.templates
        assert 0 < spec.search.frame - template.frame <= 30 + 5 * 20  # the window widens by 5 when empty
    gaps = [s.search.frame - s.templates[0].frame for s in specs(index, 400, stage=1, geometry=S, cfg=cfg)]
    assert np.mean(np.array(gaps) <= 30) > 0.97


def test_stark_st_dynamic_template_lies_within_max_gap_of_the_search_frame(index):
    cfg = DataConfig(max_gap=25)
    for spec in specs(index, 400, stage=1, cfg=cfg):
        initial, dynamic = spec.templates
        if initial.frame >= spec.search.frame:
            assert spec.search.frame <= dynamic.frame < spec.search.frame + 25
        else:
            assert spec.search.frame - 25 <= dynamic.frame < spec.search.frame


def test_dataset_ratios_set_how_often_each_dataset_is_drawn():
    cfg = DataConfig(dataset_ratios={"got10k": 3.0, "lasot": 1.0})
    records = [r for name, dataset in (("a", "got10k"), ("b", "got10k"), ("c", "lasot"))
               for r in sequence_records(name, dataset, np.ones(60, dtype=bool))]
    index = build_frame_index(records, cfg, num_templates=2)
    drawn = [index.sequence_names[s.templates[0].sequence].split("/")[0] for s in specs(index, 2000, 1, cfg=cfg)]
    assert abs(np.mean(np.array(drawn) == "got10k") - 0.75) < 0.03


def test_a_dataset_missing_from_the_ratios_is_a_named_error():
    records = sequence_records("a", "got10k", np.ones(60, dtype=bool)) + \
        sequence_records("c", "lasot", np.ones(60, dtype=bool))
    with pytest.raises(ValueError, match="no entry for 'lasot'"):
        build_frame_index(records, DataConfig(dataset_ratios={"got10k": 1.0}), num_templates=2)


def test_search_crops_are_jittered_as_officially_and_templates_are_not(index):
    log_scales, shifts = [], []
    for spec in specs(index, 1500, stage=1):
        for template in spec.templates:
            np.testing.assert_allclose(template.crop_box_xywh, template.target_box_xywh)
        crop, target = spec.search.crop_box_xywh, spec.search.target_box_xywh
        log_scales.append(np.log(crop[2:] / target[2:]))
        centre_shift = (crop[:2] + crop[2:] / 2) - (target[:2] + target[2:] / 2)
        shifts.append(centre_shift / np.sqrt(crop[2] * crop[3]))
    assert abs(np.std(log_scales) - 0.5) < 0.05  # log-normal scale, sigma 0.5
    shifts = np.abs(np.concatenate(shifts))
    assert shifts.max() <= 0.5 * 4.5 + 1e-9 and shifts.max() > 0.9 * 2.25  # uniform within +-0.5 * 4.5


def test_the_same_seed_and_epoch_give_the_same_samples_and_another_epoch_differs(index):
    first = specs(index, 50, stage=2, seed=7, epoch=3)
    again = specs(index, 50, stage=2, seed=7, epoch=3)
    other = specs(index, 50, stage=2, seed=7, epoch=4)
    key = lambda s: (s.label, s.search.sequence, s.search.frame, tuple(s.search.crop_box_xywh))  # noqa: E731
    assert [key(s) for s in first] == [key(s) for s in again]
    assert [key(s) for s in first] != [key(s) for s in other]


def test_frames_map_to_the_clip_that_holds_them(index):
    seq = index.sequence_names.index("got10k/train/a")
    assert index.clip_of(seq, 0) == ("mem://a/0", 0)
    assert index.clip_of(seq, 49) == ("mem://a/0", 49)
    assert index.clip_of(seq, 50) == ("mem://a/1", 0)
    assert index.clip_of(seq, 299) == ("mem://a/5", 49)


def negatives_of(index, kinds: dict[str, float], n: int = 600):
    return [s for s in specs(index, n, stage=2, cfg=DataConfig(negative_mix=kinds)) if s.label == 0.0]


def test_drift_negatives_crop_the_right_frame_with_the_target_wholly_outside_the_crop(index):
    from stark.platform.crop import crop_window

    drifted = negatives_of(index, {"drift": 1.0})
    assert len(drifted) > 200
    for spec in drifted:
        assert spec.search.sequence == spec.templates[0].sequence
        assert index.sequence_visible(spec.search.sequence)[spec.search.frame]
        target = spec.search.target_box_xywh
        np.testing.assert_array_equal(target, index.box(spec.search.sequence, spec.search.frame))
        window = crop_window(spec.search.crop_box_xywh, ST.search_factor, ST.search_size)
        x, y, w, h = target
        outside = (x >= window.x0 + window.side or x + w <= window.x0
                   or y >= window.y0 + window.side or y + h <= window.y0)
        assert outside, (target, window)


def test_occluded_negatives_crop_an_absent_frame_where_the_target_was_last_seen(index):
    from stark.platform.data.sampling import last_visible_before

    occluded = negatives_of(index, {"occluded": 1.0})
    assert len(occluded) > 200
    hidden = [s for s in occluded if not index.sequence_visible(s.search.sequence)[s.search.frame]]
    assert hidden  # sequences with absent frames give occluded crops, the others drift crops
    for spec in hidden:
        seq = spec.search.sequence
        assert seq == spec.templates[0].sequence
        last_seen = last_visible_before(index.sequence_visible(seq), spec.search.frame)
        np.testing.assert_array_equal(spec.search.target_box_xywh, index.box(seq, last_seen))
    for spec in occluded:
        if spec not in hidden:  # no absent frame in that sequence: the right frame, target outside the crop
            assert index.sequence_visible(spec.search.sequence)[spec.search.frame]


def test_last_visible_before_looks_back_first_then_forward():
    from stark.platform.data.sampling import last_visible_before

    visible = np.array([False, True, True, False, False, True])
    assert last_visible_before(visible, 4) == 2
    assert last_visible_before(visible, 0) == 1  # nothing before: the first visible frame after
    assert last_visible_before(np.zeros(3, dtype=bool), 1) is None


def test_the_negative_mix_sets_the_share_of_each_kind(index):
    negatives = negatives_of(index, {"other_sequence": 1.0, "drift": 1.0}, n=1200)
    other = np.mean([s.search.sequence != s.templates[0].sequence for s in negatives])
    assert 0.4 < other < 0.6  # drift crops stay in the template's sequence


def test_an_unknown_negative_kind_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="data.negative_mix"):
        DataConfig(negative_mix={"blurry": 1.0}).validate()
