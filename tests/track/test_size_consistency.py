"""Size consistency (`tracker.size_consistency`): the score every decision uses, and every result reports,
is the network's score times exp(-strength * |log(s / s_ref)|), s the box's sqrt(w * h) and s_ref that of
the box the newest template was cut around. A box that has grown onto its surroundings, or a look-alike at
another size, then counts as less sure; the official loop (0) reports the network's score unchanged.

The network is the scripted one of test_redetection.py: its box is the bounding box of the white pixels in
the search crop, its score 1 when they are inside the crop.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from stark.platform.evaluate.metrics import box_iou_xywh
from stark.platform.track.config import TrackerSettings
from stark.platform.track.loop import ResumePoint, redetection_boxes, size_consistent, track_many

from .test_redetection import H, W, SquareSeer

STRENGTH = 0.5


def video_of_squares(layouts: list[list[tuple[int, int, int]]]) -> list[np.ndarray]:
    """Black frames, each with white squares given as (x, y, side)."""
    frames = []
    for squares in layouts:
        frame = np.zeros((H, W, 3), np.uint8)
        for x, y, side in squares:
            frame[y:y + side, x:x + side] = 255
        frames.append(frame)
    return frames


def test_a_box_of_the_reference_size_keeps_its_score_and_others_lose_by_their_size_ratio():
    scores = np.array([0.9, 0.9, 0.9, 0.8, math.nan])
    sizes = np.array([20.0, 40.0, 10.0, 20.0, 40.0])
    adjusted = size_consistent(scores, sizes, np.full(5, 20.0), strength=1.0)
    np.testing.assert_allclose(adjusted[:4], [0.9, 0.45, 0.45, 0.8])  # twice or half the size: x 1/2
    assert math.isnan(adjusted[4])  # no score stays no score


def test_the_official_loop_reports_the_networks_score_whatever_the_size():
    growing = [[(100, 100, 20)]] * 3 + [[(95, 95, 30)]] * 3
    result = SquareSeer(TrackerSettings()).track(video_of_squares(growing), [100, 100, 20, 20])
    assert (result.scores[1:] == 1.0).all()


def sizes(result) -> np.ndarray:
    return np.sqrt(result.boxes[:, 2] * result.boxes[:, 3])


def consistency(size, reference):
    return np.exp(-STRENGTH * np.abs(np.log(size / reference)))


def test_a_box_larger_than_the_template_shows_scores_less_by_its_size_ratio():
    growing = [[(100, 100, 20)]] * 3 + [[(95, 95, 30)]] * 3
    settings = TrackerSettings(size_consistency=STRENGTH)
    result = SquareSeer(settings).track(video_of_squares(growing), [100, 100, 20, 20])
    # the scripted network scores 1; its boxes are about the squares' (within a pixel: the crop is resampled)
    np.testing.assert_allclose(result.scores[1:], consistency(sizes(result)[1:], 20))
    assert (result.scores[1:3] > 0.95).all() and (result.scores[3:] < 1.5 ** -STRENGTH + 0.02).all()


def test_a_new_dynamic_template_makes_its_box_the_reference():
    growing = [[(100, 100, 20)]] * 3 + [[(95, 95, 30)]] * 4
    settings = TrackerSettings(size_consistency=STRENGTH, update_interval=4, score_threshold=0.5)
    result = SquareSeer(settings).track(video_of_squares(growing), [100, 100, 20, 20])
    assert result.updates == [4]  # frame 4 holds the 30 px square, scored about 0.8 > 0.5
    np.testing.assert_allclose(result.scores[4], consistency(sizes(result)[4], 20))
    # from then on its box is the reference
    np.testing.assert_allclose(result.scores[5:], consistency(sizes(result)[5:], sizes(result)[4]))
    assert (result.scores[5:] > 0.97).all()


def test_a_resumed_sequence_keeps_the_reference_of_its_newest_template():
    growing = [[(100, 100, 20)]] * 3 + [[(95, 95, 30)]] * 5
    settings = TrackerSettings(size_consistency=STRENGTH, update_interval=4, score_threshold=0.5)
    frames = video_of_squares(growing)
    straight = SquareSeer(settings).track(frames, [100, 100, 20, 20])
    [(_, resumed)] = list(track_many(SquareSeer(settings), [(frames[4:], ResumePoint(straight, 4))], batch_size=1))
    np.testing.assert_array_equal(resumed.scores, straight.scores)


def test_a_lost_target_is_found_again_beside_a_larger_look_alike_the_network_scores_as_high():
    settings = TrackerSettings(redetect_after=2, redetect_threshold=0.5)
    start = [100, 100, 20, 20]
    # the grid searched once the target is lost: the windows around the held box's scale
    windows = redetection_boxes(start, H, W, 5.0, settings.redetect_windows)
    first, last = windows[0], windows[-1]
    centre = lambda box: (box[0] + box[2] / 2, box[1] + box[3] / 2)
    (fx, fy), (lx, ly) = centre(first), centre(last)
    look_alike = (int(fx - 18), int(fy - 18), 36)  # alone in the first window searched, whole
    target = (int(lx - 10), int(ly - 10), 20)  # alone in the last window, whole
    layouts = [[(100, 100, 20)]] * 3 + [[]] * 4 + [[look_alike, target]] * 3
    frames = video_of_squares(layouts)
    truth = np.array([[target[0], target[1], 20, 20]], dtype=float)

    plain = SquareSeer(settings).track(frames, start)
    assert box_iou_xywh(plain.boxes[-1:], truth)[0] == 0  # equal scores: the first window's look-alike wins
    sized = SquareSeer(dataclasses.replace(settings, size_consistency=STRENGTH)).track(frames, start)
    assert box_iou_xywh(sized.boxes[-3:], np.repeat(truth, 3, axis=0)).min() > 0.9


def test_a_negative_strength_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="tracker.size_consistency"):
        TrackerSettings(size_consistency=-0.1).validate()
