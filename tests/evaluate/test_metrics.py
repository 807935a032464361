"""Benchmark metrics match hand-computed cases and the GOT-10k / pytracking conventions.

Golden values are worked out by hand in the comments; the conventions themselves come from the
GOT-10k toolkit (got10k/experiments/got10k.py, got10k/utils/metrics.py) and pytracking
(pytracking/analysis/extract_results.py, plot_results.py), as the metrics module docstring lists.
"""
from __future__ import annotations

import numpy as np
import pytest

from stark.platform.evaluate.metrics import (BENCHMARK_PROTOCOLS, CENTER_THRESHOLDS_PX, NORM_CENTER_THRESHOLDS,
                                    OVERLAP_THRESHOLDS, aggregate, bootstrap_interval, box_iou_xywh,
                                    center_error_xywh, roc_auc, sequence_metrics)

GT_BOX = [10.0, 20.0, 40.0, 20.0]  # 40 x 20 box, area 800


def track(n: int, box=GT_BOX) -> np.ndarray:
    return np.tile(np.asarray(box, dtype=np.float64), (n, 1))


def test_thresholds_are_the_toolkits_grids():
    assert len(OVERLAP_THRESHOLDS) == 21 and OVERLAP_THRESHOLDS[0] == 0 and OVERLAP_THRESHOLDS[-1] == 1
    assert OVERLAP_THRESHOLDS[10] == 0.5 and OVERLAP_THRESHOLDS[15] == 0.75
    assert CENTER_THRESHOLDS_PX.tolist() == list(range(51)) and CENTER_THRESHOLDS_PX[20] == 20
    assert len(NORM_CENTER_THRESHOLDS) == 51 and NORM_CENTER_THRESHOLDS[20] == 0.2


def test_perfect_tracker_scores_one_on_got10k():
    gt = track(10)
    scores = sequence_metrics(gt, gt, protocol="got10k").scores()
    assert scores == {"ao": 1.0, "sr50": 1.0, "sr75": 1.0}


def test_perfect_tracker_under_ope_has_auc_twenty_over_twenty_one():
    # success counts IoU strictly above each threshold; nothing exceeds 1.0, so the last of the 21
    # points is 0 for every tracker and the mean of the curve tops out at 20/21 (OTB/LaSOT/pytracking).
    gt = track(10)
    m = sequence_metrics(gt, gt, protocol="ope")
    assert m.success_curve.tolist() == [1.0] * 20 + [0.0]
    scores = m.scores()
    assert scores["auc"] == pytest.approx(20 / 21)
    assert scores["precision"] == 1.0 and scores["norm_precision"] == 1.0
    assert scores["op50"] == 1.0 and scores["op75"] == 1.0


def test_constant_offset_gives_hand_computed_iou_and_centre_error():
    # shifted 10 px right: intersection 30 x 20 = 600, union 800 + 800 - 600 = 1000 -> IoU 0.6;
    # centre error 10 px; normalised by the gt width 40 -> 0.25 (fails the 0.2 threshold)
    gt = track(5)
    pred = track(5, [20.0, 20.0, 40.0, 20.0])
    assert box_iou_xywh(pred, gt) == pytest.approx([0.6] * 5)
    assert center_error_xywh(pred, gt) == pytest.approx([10.0] * 5)
    assert center_error_xywh(pred, gt, normalized=True) == pytest.approx([0.25] * 5)

    got = sequence_metrics(pred, gt, protocol="got10k").scores()
    assert got == pytest.approx({"ao": 0.6, "sr50": 1.0, "sr75": 0.0})

    ope = sequence_metrics(pred, gt, protocol="ope").scores()
    # frame 0 becomes the gt box (succeeds at 20 of 21 thresholds); frames 1..4 have IoU 0.6,
    # above the 12 thresholds 0, 0.05, ..., 0.55 -> AUC = (20 + 4 * 12) / (21 * 5)
    assert ope["auc"] == pytest.approx((20 + 4 * 12) / (21 * 5))
    assert ope["precision"] == 1.0  # 10 px <= 20 px
    assert ope["norm_precision"] == pytest.approx(1 / 5)  # only frame 0 is within 0.2
    assert ope["op50"] == 1.0 and ope["op75"] == pytest.approx(1 / 5)


def test_success_is_strictly_above_and_precision_includes_the_threshold():
    gt = track(3, [0.0, 0.0, 10.0, 10.0])
    half = track(3, [0.0, 0.0, 10.0, 5.0])  # inside the gt, half its area: IoU exactly 0.5
    assert sequence_metrics(half, gt, protocol="got10k").scores()["sr50"] == 0.0

    big = track(3, [0.0, 0.0, 100.0, 100.0])
    at_20px = track(3, [12.0, 16.0, 100.0, 100.0])  # offset (12, 16) -> exactly 20 px
    at_21px = track(3, [12.0, 16.0 + 1.0 + 1e-9, 100.0, 100.0])
    assert sequence_metrics(at_20px, big, protocol="ope").scores()["precision"] == 1.0
    assert sequence_metrics(at_21px, big, protocol="ope").scores()["precision"] == pytest.approx(1 / 3)


def test_got10k_skips_the_first_frame():
    gt = track(5)
    pred = gt.copy()
    pred[0] = [500.0, 500.0, 5.0, 5.0]  # nowhere near: ignored, frame 0 is the initialisation
    m = sequence_metrics(pred, gt, protocol="got10k")
    assert m.num_evaluated == 4 and np.isnan(m.iou[0])
    assert m.scores()["ao"] == 1.0


def test_ope_replaces_the_first_frame_with_ground_truth():
    gt = track(4)
    pred = gt.copy()
    pred[0] = [500.0, 500.0, 5.0, 5.0]
    m = sequence_metrics(pred, gt, protocol="ope")
    assert m.num_evaluated == 4 and m.iou[0] == 1.0
    assert m.scores()["auc"] == pytest.approx(20 / 21)


def test_got10k_skips_frames_where_the_target_is_absent():
    gt = track(6)
    pred = gt.copy()
    visible = np.array([True, True, False, False, True, True])
    pred[2:4] = [300.0, 300.0, 10.0, 10.0]  # wrong, but the target is not there: not scored
    m = sequence_metrics(pred, gt, visible, protocol="got10k")
    assert m.num_evaluated == 3  # frames 1, 4, 5
    assert m.scores() == {"ao": 1.0, "sr50": 1.0, "sr75": 1.0}


def test_ope_counts_absent_frames_as_failures_unless_configured_otherwise():
    gt = track(10)
    visible = np.ones(10, dtype=bool)
    visible[[3, 4, 7]] = False
    pred = gt.copy()  # even a box on the (absent) target's last position counts as a failure

    counted = sequence_metrics(pred, gt, visible, protocol="ope").scores()
    assert counted["auc"] == pytest.approx(7 / 10 * 20 / 21)
    assert counted["precision"] == pytest.approx(0.7) and counted["norm_precision"] == pytest.approx(0.7)

    skipped = sequence_metrics(pred, gt, visible, protocol="ope", absent_as_failure=False)
    assert skipped.num_evaluated == 7
    assert skipped.scores()["auc"] == pytest.approx(20 / 21) and skipped.scores()["precision"] == 1.0


def test_a_degenerate_ground_truth_box_is_treated_as_absent():
    gt = track(4)
    gt[2] = [10.0, 20.0, 0.0, 0.0]
    m = sequence_metrics(gt, gt, protocol="ope")
    assert m.iou[2] == 0.0 and m.center_error_px[2] == np.inf
    assert sequence_metrics(gt, gt, protocol="got10k").num_evaluated == 2


def test_got10k_clips_boxes_to_the_image_as_the_toolkit_does():
    gt = track(3, [0.0, 0.0, 30.0, 20.0])
    image = (100, 50)  # width, height
    # crossing the left edge: the toolkit moves x to 0 and keeps w (30), so it matches the gt
    across_left = track(3, [-10.0, 0.0, 30.0, 20.0])
    assert sequence_metrics(across_left, gt, protocol="got10k", image_size=image).scores()["ao"] == 1.0
    # without the bound, the plain geometry: [-10, 20) vs [0, 30) -> 400 / 800
    assert sequence_metrics(across_left, gt, protocol="got10k").scores()["ao"] == pytest.approx(0.5)
    # entirely right of the image: x clamps to 100, w to 0 -> IoU 0
    outside = track(3, [120.0, 0.0, 30.0, 20.0])
    assert sequence_metrics(outside, gt, protocol="got10k", image_size=image).scores()["ao"] == 0.0


def test_ope_does_not_clip_boxes_outside_the_image():
    gt = track(3, [0.0, 0.0, 30.0, 20.0])
    across_left = track(3, [-10.0, 0.0, 30.0, 20.0])
    m = sequence_metrics(across_left, gt, protocol="ope")
    assert m.iou[1:] == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="GOT-10k"):
        sequence_metrics(across_left, gt, protocol="ope", image_size=(100, 50))


def test_predictions_with_non_positive_size_are_misses_and_nan_is_an_error():
    gt = track(3)
    pred = gt.copy()
    pred[1, 2] = 0.0
    pred[2, 3] = -5.0
    m = sequence_metrics(pred, gt, protocol="ope")
    assert m.iou[1:].tolist() == [0.0, 0.0] and np.isinf(m.center_error_px[1:]).all()
    pred[1, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sequence_metrics(pred, gt, protocol="ope")
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        sequence_metrics(pred[:2], gt, protocol="ope")


def test_iou_and_centre_error_agree_with_the_toolkits_pixel_convention():
    # the toolkits write corners as x + w - 1 and centres as x + (w - 1) / 2; both offsets cancel
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(1, 40, (200, 2))], axis=1)
    b = np.concatenate([rng.uniform(0, 50, (200, 2)), rng.uniform(1, 40, (200, 2))], axis=1)
    tl = np.maximum(a[:, :2], b[:, :2])
    br = np.minimum(a[:, :2] + a[:, 2:] - 1.0, b[:, :2] + b[:, 2:] - 1.0)
    inter = np.clip(br - tl + 1.0, 0, None).prod(axis=1)
    reference_iou = inter / (a[:, 2:].prod(axis=1) + b[:, 2:].prod(axis=1) - inter)
    ca, cb = a[:, :2] + 0.5 * (a[:, 2:] - 1.0), b[:, :2] + 0.5 * (b[:, 2:] - 1.0)
    reference_center = np.sqrt(((ca - cb) ** 2).sum(axis=1))
    reference_norm = np.sqrt((((ca - cb) / b[:, 2:]) ** 2).sum(axis=1))
    np.testing.assert_allclose(box_iou_xywh(a, b), reference_iou, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(center_error_xywh(a, b), reference_center, rtol=1e-12)
    np.testing.assert_allclose(center_error_xywh(a, b, normalized=True), reference_norm, rtol=1e-12)


def test_fps_is_the_mean_of_inverse_frame_times():
    gt = track(4)
    m = sequence_metrics(gt, gt, protocol="got10k", times_s=[0.5, 0.1, 0.1, np.nan])
    assert m.scores()["fps"] == pytest.approx((2 + 10 + 10) / 3)


def test_got10k_split_pools_frames_and_ope_split_averages_sequences():
    long_gt, short_gt = track(11), track(3)
    far = track(3, [300.0, 300.0, 40.0, 20.0])
    got = aggregate({
        "long": sequence_metrics(long_gt, long_gt, protocol="got10k"),  # 10 frames, IoU 1
        "short": sequence_metrics(far, short_gt, protocol="got10k"),  # 2 frames, IoU 0
    })
    assert got.scores["ao"] == pytest.approx(10 / 12)
    assert got.scores["sr50"] == pytest.approx(10 / 12)

    ope = aggregate({
        "long": sequence_metrics(long_gt, long_gt, protocol="ope"),  # AUC 20/21
        "short": sequence_metrics(far, short_gt, protocol="ope"),  # only frame 0 succeeds
    })
    assert ope.scores["auc"] == pytest.approx((20 / 21 + (20 / 21) / 3) / 2)
    assert ope.scores["precision"] == pytest.approx((1 + 1 / 3) / 2)
    assert [row["sequence"] for row in ope.per_sequence] == ["long", "short"]
    assert ope.per_sequence[1]["num_frames"] == 3 and ope.per_sequence[1]["num_evaluated"] == 3


def test_scores_are_flat_floats_ready_for_mlflow():
    gt = track(5)
    result = aggregate({"a": sequence_metrics(gt, gt, protocol="ope", times_s=[0.1] * 5)})
    assert set(result.scores) == {"auc", "precision", "norm_precision", "op50", "op75", "fps"}
    assert all(type(v) is float for v in result.scores.values())


def test_per_attribute_table_scores_each_attribute_over_its_sequences():
    gt = track(4)
    off = track(4, [20.0, 20.0, 40.0, 20.0])  # IoU 0.6 on frames 1..3
    per_sequence = {
        "clean": sequence_metrics(gt, gt, protocol="got10k"),
        "shifted": sequence_metrics(off, gt, protocol="got10k"),
    }
    result = aggregate(per_sequence, attributes={"clean": [], "shifted": ["Motion Blur", "Fast Motion"]})
    assert [row["attribute"] for row in result.per_attribute] == ["Fast Motion", "Motion Blur"]
    assert result.per_attribute[0]["num_sequences"] == 1
    assert result.per_attribute[0]["ao"] == pytest.approx(0.6)
    assert result.scores["ao"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="not scored"):
        aggregate(per_sequence, attributes={"ghost": ["Occlusion"]})


def test_a_split_mixes_no_protocols():
    gt = track(3)
    with pytest.raises(ValueError, match="different protocols"):
        aggregate({"a": sequence_metrics(gt, gt, protocol="ope"),
                   "b": sequence_metrics(gt, gt, protocol="got10k")})


def test_benchmark_protocols_name_each_benchmarks_rules():
    gt = track(3)
    for name, kwargs in BENCHMARK_PROTOCOLS.items():
        assert sequence_metrics(gt, gt, **kwargs).protocol == kwargs["protocol"], name
    assert BENCHMARK_PROTOCOLS["lasot"]["absent_as_failure"] is True


# --- ROC AUC of a confidence -------------------------------------------------------------------------
def test_roc_auc_is_one_when_every_positive_scores_above_every_negative():
    assert roc_auc([0.1, 0.2, 0.7, 0.9], [False, False, True, True]) == 1.0


def test_roc_auc_is_zero_when_the_score_is_inverted():
    assert roc_auc([0.9, 0.7, 0.2, 0.1], [False, False, True, True]) == 0.0


def test_roc_auc_of_a_constant_score_is_one_half():
    # every positive-negative pair is a tie, and a tie counts half
    assert roc_auc([0.45] * 6, [True, False, True, False, False, True]) == 0.5


def test_roc_auc_matches_a_hand_count_of_pairs():
    # positives 0.35, 0.8; negatives 0.1, 0.4: 0.35 beats 0.1 only, 0.8 beats both -> 3 of 4 pairs
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # positives 0.5, 0.9; negatives 0.2, 0.5: 1 + 0.5 (tie) + 1 + 1 = 3.5 of 4 pairs
    assert roc_auc([0.2, 0.5, 0.5, 0.9], [0, 1, 0, 1]) == pytest.approx(0.875)


def test_roc_auc_is_undefined_with_one_class_and_refuses_missing_scores():
    assert np.isnan(roc_auc([0.2, 0.9], [True, True]))
    assert np.isnan(roc_auc([0.2, 0.9], [False, False]))
    with pytest.raises(ValueError, match="finite"):
        roc_auc([np.nan, 0.9], [True, False])


# --- how far a figure over sequences could move ----------------------------------------------------------
def test_a_bootstrap_interval_of_identical_sequences_has_no_width():
    assert bootstrap_interval([0.4] * 12, np.mean) == (pytest.approx(0.4), pytest.approx(0.4))


def test_a_bootstrap_interval_holds_the_figure_narrows_with_more_sequences_and_repeats_with_its_seed():
    rng = np.random.default_rng(0)
    few, many = list(rng.uniform(0, 1, 6)), list(rng.uniform(0, 1, 96))
    lo_few, hi_few = bootstrap_interval(few, np.mean)
    lo_many, hi_many = bootstrap_interval(many, np.mean)
    assert lo_few < np.mean(few) < hi_few and lo_many < np.mean(many) < hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 2  # ~1/sqrt(16) as wide
    assert bootstrap_interval(few, np.mean, seed=3) == bootstrap_interval(few, np.mean, seed=3)
    # the mean of 4 draws from two 0s and two 1s is 0 or 1 with probability 1/16 each (< 10%, > 5%):
    # an 80% interval leaves those out, a 90% one does not
    values = [0.0, 0.0, 1.0, 1.0]
    assert bootstrap_interval(values, np.mean, draws=4000, level=0.8) == (0.25, 0.75)
    assert bootstrap_interval(values, np.mean, draws=4000, level=0.9) == (0.0, 1.0)


def test_a_bootstrap_interval_leaves_out_resamples_whose_statistic_is_undefined():
    # one positive and one negative sequence: a resample of one class has no AUC
    groups = [([0.9], [True]), ([0.1], [False])]

    def auc(drawn):
        return roc_auc(np.concatenate([s for s, _ in drawn]), np.concatenate([y for _, y in drawn]))

    assert bootstrap_interval(groups, auc) == (1.0, 1.0)
    assert np.isnan(bootstrap_interval([([0.9], [True])], auc)).all()
    with pytest.raises(ValueError, match="at least one group"):
        bootstrap_interval([], np.mean)
