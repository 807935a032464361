"""The tracker: crops map back exactly, the update rule fires only when it should, batching changes nothing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.model_fixtures import preset_model_config
from stark.model.stark import build_stark
from stark.platform.crop import crop_around_box, crop_window
from stark.platform.track.tracker import StarkTracker, should_update, track_many
from stark.platform.track.config import TrackerSettings


def moving_square_frames(n: int, seed: int, size=(120, 160)) -> tuple[list[np.ndarray], np.ndarray]:
    """A textured square drifting over a noise background; returns frames and the xywh truth."""
    rng = np.random.default_rng(seed)
    h, w = size
    background = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    patch = rng.integers(0, 255, (24, 30, 3), dtype=np.uint8)
    frames, boxes = [], []
    x, y = rng.uniform(10, 60), rng.uniform(10, 50)
    for _ in range(n):
        frame = background.copy()
        xi, yi = int(x), int(y)
        frame[yi:yi + 24, xi:xi + 30] = patch
        frames.append(frame)
        boxes.append([xi, yi, 30, 24])
        x, y = np.clip(x + rng.normal(0, 2), 0, w - 31), np.clip(y + rng.normal(0, 2), 0, h - 25)
    return frames, np.array(boxes, dtype=float)


@pytest.fixture(scope="module")
def tiny_tracker_parts():
    torch.manual_seed(0)
    cfg = preset_model_config("stark_tiny")
    return build_stark(cfg).eval(), cfg


@pytest.mark.parametrize("box", [[40.3, 30.7, 30.0, 20.0], [-5.0, -8.0, 25.0, 40.0], [150.0, 100.0, 20.0, 30.0]])
def test_a_box_mapped_into_the_crop_and_back_is_unchanged(box):
    window = crop_window(box, factor=5.0, out_size=128)
    np.testing.assert_allclose(window.box_from_crop(window.box_to_crop(box)), box, atol=1e-9)


def test_the_box_sits_at_the_centre_of_its_crop_and_padding_is_masked():
    frame = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop, mask, window = crop_around_box(frame, [0, 0, 20, 20], factor=4.0, out_size=80)
    in_crop = window.box_to_crop([0, 0, 20, 20])
    assert in_crop[0] + in_crop[2] / 2 == pytest.approx(40, abs=1) and in_crop[2] == pytest.approx(20)
    assert mask[:20, :20].all() and not mask[60:, 60:].any()  # top-left corner lies outside the frame
    assert (crop[mask] == 0).all() and (crop[~mask] == 200).all()


@pytest.mark.parametrize("frame_index, score, fires", [
    (10, 0.9, True), (20, 0.9, True), (10, 0.5, False), (10, 0.4, False), (11, 0.99, False), (5, 0.99, False),
])
def test_update_fires_only_on_interval_frames_and_above_the_threshold(frame_index, score, fires):
    assert should_update(frame_index, score, TrackerSettings(update_interval=10, score_threshold=0.5)) is fires


def test_dynamic_template_changes_exactly_on_the_due_frames(tiny_tracker_parts):
    model, cfg = tiny_tracker_parts
    frames, truth = moving_square_frames(13, seed=1)
    always = StarkTracker(model, cfg, TrackerSettings(update_interval=4, score_threshold=0.0))
    assert always.track(frames, truth[0]).updates == [4, 8, 12]
    never = StarkTracker(model, cfg, TrackerSettings(update_interval=4, score_threshold=1.0))
    assert never.track(frames, truth[0]).updates == []


def test_tracked_boxes_stay_inside_the_frame(tiny_tracker_parts):
    model, cfg = tiny_tracker_parts
    frames, truth = moving_square_frames(15, seed=2)
    result = StarkTracker(model, cfg, TrackerSettings()).track(frames, truth[0])
    assert result.boxes.shape == (15, 4) and np.array_equal(result.boxes[0], truth[0])
    x, y, w, h = result.boxes[1:].T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 160 + 1e-9).all() and (y + h <= 120 + 1e-9).all()
    assert (w >= 10).all() and (h >= 10).all()
    assert np.isnan(result.scores[0]) and ((result.scores[1:] >= 0) & (result.scores[1:] <= 1)).all()


def test_batched_tracking_gives_the_boxes_of_one_at_a_time(tiny_tracker_parts):
    model, cfg = tiny_tracker_parts
    settings = TrackerSettings(update_interval=3, score_threshold=0.3)
    tracker = StarkTracker(model, cfg, settings)
    # different lengths so sequences leave (and others join) mid-way
    sequences = [moving_square_frames(n, seed=s) for s, n in enumerate([9, 14, 6, 11, 8])]
    alone = [tracker.track(frames, truth[0]) for frames, truth in sequences]
    batched = dict(track_many(tracker, [(frames, truth[0]) for frames, truth in sequences], batch_size=3))
    assert sorted(batched) == list(range(5))
    for i, single in enumerate(alone):
        np.testing.assert_allclose(batched[i].boxes, single.boxes, atol=1e-3)
        np.testing.assert_allclose(batched[i].scores, single.scores, atol=1e-5)
        assert batched[i].updates == single.updates


def test_stark_s_tracks_without_scores_or_updates():
    torch.manual_seed(0)
    cfg = preset_model_config("stark_tiny", variant="S")
    frames, truth = moving_square_frames(6, seed=3)
    result = StarkTracker(build_stark(cfg), cfg, TrackerSettings(update_interval=1, score_threshold=0.0)).track(
        frames, truth[0])
    assert np.isnan(result.scores).all() and result.updates == []


def test_an_initial_box_outside_the_frame_is_refused(tiny_tracker_parts):
    model, cfg = tiny_tracker_parts
    frames, _ = moving_square_frames(2, seed=4)
    with pytest.raises(ValueError, match="outside"):
        StarkTracker(model, cfg, TrackerSettings()).track(frames, [500, 500, 10, 10])
