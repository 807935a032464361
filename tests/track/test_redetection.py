"""Re-detection (`tracker.redetect_after`): a target scored below `redetect_threshold` for that many frames
is searched for over the whole frame, from the last box the tracker was sure of, and found again where it
reappears; the official loop (redetect_after=0) never looks beyond the crop around its last box.

The loop is the subject here, so the network is a scripted one that sees a white square: its box is the
bounding box of the bright pixels in the search crop, its score 1 when there are any (0.6 when they touch
the crop's edge, 0.2 when there are none).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stark.model.config import ModelConfig
from stark.platform.evaluate.metrics import box_iou_xywh
from stark.platform.image_norm import IMAGENET_MEAN, IMAGENET_STD
from stark.platform.track.config import TrackerSettings
from stark.platform.track.loop import (ResumePoint, TrackerLoop, recovery_state, redetection_boxes,
                                       track_many)

H, W, SIDE = 270, 480, 20
NOT_SEEN = 0.2  # the scripted score where the square is not in the crop: below 0.5, above 0.1
CUT_OFF = 0.6  # where the square touches the crop's edge


class Count:
    """Template tokens of the scripted network: only how many there are (stack / select as the loop uses)."""

    def __init__(self, n: int):
        self.n = n

    @staticmethod
    def stack(parts: list["Count"]) -> "Count":
        return Count(sum(p.n for p in parts))

    def select(self, index: int) -> "Count":
        return Count(1)


class SquareSeer(TrackerLoop):
    def __init__(self, settings: TrackerSettings):
        self.cfg = ModelConfig()  # STARK-ST crop sizes: two templates, 320 px search crops at factor 5
        self._settings = settings
        self.crops_seen = 0

    def _forward_templates(self, images, mask):
        return Count(len(images))

    def _forward_search(self, templates, search, search_mask):
        assert templates[0].n == len(search)  # one template row per search crop
        self.crops_seen += len(search)
        white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
        boxes, scores = [], []
        for crop in search:
            ys, xs = np.nonzero(crop[0] > white - 0.1)
            if len(xs) == 0:
                boxes.append([0.5, 0.5, 0.2, 0.2])
                scores.append(NOT_SEEN)
                continue
            size = crop.shape[-1]
            x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
            boxes.append([(x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size])
            cut_off = min(x0, y0) == 0 or max(x1, y1) == size  # a square at the crop's edge may be cut
            scores.append(CUT_OFF if cut_off else 1.0)
        return np.array(boxes, dtype=np.float32), np.array(scores, dtype=np.float32)


def square_video(where: list[tuple[int, int] | None]) -> tuple[list[np.ndarray], np.ndarray]:
    """Black frames with a white SIDE x SIDE square at each (x, y) top-left, or none; and its boxes."""
    frames, boxes = [], []
    for spot in where:
        frame = np.zeros((H, W, 3), np.uint8)
        if spot is not None:
            frame[spot[1]:spot[1] + SIDE, spot[0]:spot[0] + SIDE] = 255
        frames.append(frame)
        boxes.append([*spot, SIDE, SIDE] if spot is not None else [0, 0, 0, 0])
    return frames, np.array(boxes, dtype=np.float64)


# seen at (100, 100) for 10 frames, gone for 10, then back far away, at (400, 200), for 20
LEAVES_AND_COMES_BACK = [(100, 100)] * 10 + [None] * 10 + [(400, 200)] * 20
REDETECTING = TrackerSettings(redetect_after=3, redetect_threshold=0.5)


def track(settings: TrackerSettings, where=LEAVES_AND_COMES_BACK):
    frames, truth = square_video(where)
    engine = SquareSeer(settings)
    result = engine.track(frames, truth[0])
    return result, truth, engine


def test_a_target_that_reappears_far_away_is_found_again_after_redetect_after_missed_frames():
    result, truth, _ = track(REDETECTING)
    back = box_iou_xywh(result.boxes[20:], truth[20:])
    assert (back > 0.9).all()  # from the first frame it is back


def test_the_official_loop_never_looks_beyond_the_crop_around_its_last_box():
    result, truth, engine = track(TrackerSettings())
    assert (box_iou_xywh(result.boxes[20:], truth[20:]) == 0).all()
    assert engine.crops_seen == len(LEAVES_AND_COMES_BACK) - 1  # one search crop per frame


def test_only_lost_frames_pay_for_the_grid_of_search_crops():
    result, _, engine = track(REDETECTING)
    lost_frames = 10 - REDETECTING.redetect_after + 1  # frames 13..19 searched whole, and frame 20 finds it
    held = result.boxes[9]  # the last box scored sure
    per_lost = len(redetection_boxes(held, H, W, 5.0, REDETECTING.redetect_windows))
    assert per_lost > 1
    assert engine.crops_seen == (len(LEAVES_AND_COMES_BACK) - 1 - lost_frames) + lost_frames * per_lost


def test_no_dynamic_template_is_cut_while_the_target_is_lost():
    every_frame = dataclasses.replace(REDETECTING, update_interval=1, score_threshold=0.1)
    result, _, _ = track(every_frame)
    lost = set(range(13, 20))  # scored NOT_SEEN (above 0.1) but searched whole: not sure of any box
    assert not lost & set(result.updates)
    assert {10, 11, 12, 20} <= set(result.updates)  # missed but not yet lost, and the frame it is found on


def test_a_resumed_sequence_remembers_how_long_it_has_been_lost():
    straight, truth, _ = track(REDETECTING)
    frames, _ = square_video(LEAVES_AND_COMES_BACK)
    for k in (5, 11, 15):  # sure, missed, lost
        engine = SquareSeer(REDETECTING)
        point = ResumePoint(straight, k)
        [(_, resumed)] = list(track_many(engine, [(frames[k:], point)], batch_size=1))
        np.testing.assert_array_equal(resumed.boxes, straight.boxes, err_msg=f"resumed at {k}")


def test_batched_sequences_with_different_numbers_of_crops_track_as_they_do_alone():
    other = [(50, 60)] * 40  # never lost: one crop per frame beside the other's grid
    alone = [track(REDETECTING, where)[0] for where in (LEAVES_AND_COMES_BACK, other)]
    videos = [square_video(where) for where in (LEAVES_AND_COMES_BACK, other)]
    together = dict(track_many(SquareSeer(REDETECTING), [(f, t[0]) for f, t in videos], batch_size=2))
    for i in range(2):
        np.testing.assert_array_equal(together[i].boxes, alone[i].boxes)


@pytest.mark.parametrize("box", [[100, 100, 20, 20], [0, 0, 5, 5], [10, 10, 60, 40]])
def test_the_grid_covers_the_frame_and_its_inside_with_the_central_half_of_a_window(box):
    boxes = redetection_boxes(box, H, W, 4.0, 16)
    assert 1 <= len(boxes) <= 16
    side = 4.0 * np.sqrt(boxes[0][2] * boxes[0][3])  # every window has the same side
    centres = np.array([[b[0] + b[2] / 2, b[1] + b[3] / 2] for b in boxes])
    ys, xs = np.mgrid[0:H + 1:5, 0:W + 1:5]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)
    nearest = np.abs(points[:, None, :] - centres[None]).max(axis=2).min(axis=1)  # Chebyshev distance
    assert (nearest <= side / 2 + 1e-6).all()  # in a window
    inside = ((points >= side / 4) & (points <= np.array([W, H]) - side / 4)).all(axis=1)
    assert (nearest[inside] <= side / 4 + 1e-6).all()  # in a window's central half


def test_a_small_box_grows_until_its_grid_fits_the_window_budget():
    boxes = redetection_boxes([0, 0, 5, 5], H, W, 4.0, 4)
    assert len(boxes) <= 4 and boxes[0][2] > 5 and boxes[0][2] == pytest.approx(boxes[0][3])


def test_a_window_larger_than_the_frame_is_one_window_at_its_centre():
    [box] = redetection_boxes([10, 10, 200, 200], H, W, 4.0, 16)
    assert box[0] + box[2] / 2 == W / 2 and box[1] + box[3] / 2 == H / 2


def test_recovery_state_holds_the_last_sure_box_and_counts_the_frames_since():
    boxes = np.arange(5 * 4, dtype=float).reshape(5, 4)
    held, missed = recovery_state(boxes, np.array([np.nan, 0.9, 0.3, 0.2, 0.1]), REDETECTING)
    assert held.tolist() == boxes[1].tolist() and missed == 3
    held, missed = recovery_state(boxes, np.array([np.nan, 0.1, 0.1, 0.1, 0.9]), REDETECTING)
    assert held.tolist() == boxes[4].tolist() and missed == 0
    held, missed = recovery_state(boxes[:1], np.array([np.nan]), REDETECTING)  # frame 0 has no score
    assert held.tolist() == boxes[0].tolist() and missed == 0


@pytest.mark.parametrize("key, value", [("redetect_after", -1), ("redetect_threshold", 1.5), ("redetect_windows", 0)])
def test_out_of_range_redetection_settings_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"tracker.{key}"):
        dataclasses.replace(TrackerSettings(), **{key: value}).validate()
