"""Aspect consistency (`tracker.aspect_consistency`): the score every decision uses, and every result
reports, is the network's score times exp(-strength * |log(a / a_ref)|), a the box's w / h and a_ref that of
the box the newest template was cut around (the same reference box as size consistency). A box stretched
along one side, half on the target and half on its surroundings, then counts as less sure; the official
loop (0) reports the network's score unchanged.

The network is the scripted one of test_redetection.py: its box is the bounding box of the white pixels in
the search crop, its score 1 when they are inside the crop.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from stark.platform.track.config import TrackerSettings
from stark.platform.track.loop import ResumePoint, aspect_consistent, track_many

from .test_redetection import H, W, SquareSeer

STRENGTH = 0.5
START = [100, 100, 20, 20]


def video_of_rectangles(layouts: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """Black frames, each with one white rectangle given as (x, y, w, h)."""
    frames = []
    for x, y, w, h in layouts:
        frame = np.zeros((H, W, 3), np.uint8)
        frame[y:y + h, x:x + w] = 255
        frames.append(frame)
    return frames


# a 20 px square for 3 frames, then the same square with as much again beside it: twice as wide
WIDENING = [(100, 100, 20, 20)] * 3 + [(100, 100, 40, 20)] * 5


def aspects(result) -> np.ndarray:
    return result.boxes[:, 2] / result.boxes[:, 3]


def consistency(aspect, reference):
    return np.exp(-STRENGTH * np.abs(np.log(aspect / reference)))


def test_a_box_of_the_reference_aspect_keeps_its_score_and_others_lose_by_their_aspect_ratio():
    scores = np.array([0.9, 0.9, 0.9, 0.8, math.nan])
    adjusted = aspect_consistent(scores, np.array([1.0, 2.0, 0.5, 1.0, 2.0]), np.full(5, 1.0), strength=1.0)
    np.testing.assert_allclose(adjusted[:4], [0.9, 0.45, 0.45, 0.8])  # twice as wide or as tall: x 1/2
    assert math.isnan(adjusted[4])  # no score stays no score


def test_the_official_loop_reports_the_networks_score_whatever_the_shape():
    result = SquareSeer(TrackerSettings()).track(video_of_rectangles(WIDENING), START)
    assert (result.scores[1:] == 1.0).all()


def test_a_box_wider_than_the_template_shows_scores_less_by_its_aspect_ratio():
    result = SquareSeer(TrackerSettings(aspect_consistency=STRENGTH)).track(video_of_rectangles(WIDENING), START)
    # the scripted network scores 1; its boxes are about the rectangles' (within a pixel: the crop is resampled)
    np.testing.assert_allclose(result.scores[1:], consistency(aspects(result)[1:], 1.0))
    assert (result.scores[1:3] > 0.95).all() and (result.scores[3:] < 2 ** -STRENGTH + 0.03).all()


def test_size_and_aspect_consistency_multiply():
    both = TrackerSettings(aspect_consistency=STRENGTH, size_consistency=0.25)
    result = SquareSeer(both).track(video_of_rectangles(WIDENING), START)
    sizes = np.sqrt(result.boxes[:, 2] * result.boxes[:, 3])
    expected = consistency(aspects(result), 1.0) * np.exp(-0.25 * np.abs(np.log(sizes / 20.0)))
    np.testing.assert_allclose(result.scores[1:], expected[1:])


def test_a_new_dynamic_template_makes_its_box_the_reference_aspect():
    settings = TrackerSettings(aspect_consistency=STRENGTH, update_interval=4, score_threshold=0.5)
    result = SquareSeer(settings).track(video_of_rectangles(WIDENING), START)
    assert result.updates == [4]  # frame 4 holds the 40 x 20 box, scored about 0.71 > 0.5
    np.testing.assert_allclose(result.scores[4], consistency(aspects(result)[4], 1.0))
    # from then on its box is the reference
    np.testing.assert_allclose(result.scores[5:], consistency(aspects(result)[5:], aspects(result)[4]))
    assert (result.scores[5:] > 0.97).all()


def test_a_resumed_sequence_keeps_the_reference_aspect_of_its_newest_template():
    settings = TrackerSettings(aspect_consistency=STRENGTH, update_interval=4, score_threshold=0.5)
    frames = video_of_rectangles(WIDENING)
    straight = SquareSeer(settings).track(frames, START)
    [(_, resumed)] = list(track_many(SquareSeer(settings), [(frames[4:], ResumePoint(straight, 4))], batch_size=1))
    np.testing.assert_array_equal(resumed.scores, straight.scores)


def test_a_negative_strength_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="tracker.aspect_consistency"):
        TrackerSettings(aspect_consistency=-0.1).validate()
