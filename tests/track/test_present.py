"""The "target absent" signal: present where sigmoid(score) >= tracker.present_threshold, in boxes.csv and
the annotated video of `stark track`, and in the precision/recall `stark evaluate` reports."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from stark.jobs.track import main as track_main
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.evaluate.report import absence_scores
from stark.platform.evaluate.runner import EvalSequence, FramesRef
from stark.platform.experiment import ConfigError, load_config, to_dict
from stark.platform.ingest.synthetic import encode_video_file, make_sequences
from stark.platform.track.annotate import ABSENT_COLOR, BOX_COLOR, draw_box
from stark.platform.track.config import TrackerSettings
from stark.platform.track.tracker import StarkTracker, TrackResult, target_present


def test_a_frame_is_present_when_its_score_reaches_the_threshold_and_always_without_a_score():
    settings = TrackerSettings(present_threshold=0.4)
    assert target_present(np.array([np.nan, 0.39, 0.4, 0.9]), settings).tolist() == [True, False, True, True]


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_a_present_threshold_outside_zero_to_one_is_refused_at_load_time(value):
    with pytest.raises(ConfigError, match="tracker.present_threshold"):
        load_config("stark_tiny", [f"tracker.present_threshold={value}"])


def test_an_absent_target_is_drawn_as_a_dashed_grey_box():
    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    absent = draw_box(frame, [10, 25, 60, 20], 0.1, 3, thickness=1, present=False)
    top_edge = absent[25, 10:70]
    assert (top_edge == ABSENT_COLOR).all(axis=1).any() and not (top_edge == BOX_COLOR).all(axis=1).any()
    assert (top_edge == 0).all(axis=1).any()  # the gaps between dashes
    present = draw_box(frame, [10, 25, 60, 20], 0.9, 3, thickness=1)
    assert (present[25, 10:70] == BOX_COLOR).all()


@pytest.fixture(scope="module")
def leaving_video(tmp_path_factory):
    """A generated video whose target leaves the frame (frames 10-14 absent) and a seeded tiny model."""
    root = tmp_path_factory.mktemp("present")
    seq = make_sequences(["leaves"], 30, (160, 120), seed=1)[0]
    assert (~seq.visible).sum() == 5
    encode_video_file(str(root / "leaves.mp4"), seq.frames, 25.0)
    cfg = load_config("stark_tiny")
    torch.manual_seed(0)
    model = build_stark(cfg.model)
    save_checkpoint(str(root / "tiny.pt"), make_checkpoint(model, to_dict(cfg)))
    return root, seq, model, cfg


def test_boxes_csv_says_per_frame_whether_the_target_is_present(tmp_path, leaving_video):
    root, seq, model, cfg = leaving_video
    # a threshold between the frames' scores (random weights: the score knows nothing of absence), so both show
    import decord

    frames = [f.asnumpy() for f in decord.VideoReader(str(root / "leaves.mp4"))]
    settings = cfg.tracker_choice.for_model(None)  # as `stark track --config stark_tiny` tracks
    scores = StarkTracker(model, cfg.model, settings).track(frames, seq.boxes_xywh[0]).scores
    ordered = np.sort(scores[1:])
    threshold = float(ordered[len(ordered) // 2 - 1: len(ordered) // 2 + 1].mean())  # between two scores
    box = ",".join(f"{v:g}" for v in seq.boxes_xywh[0])
    assert track_main([str(root / "leaves.mp4"), "--box", box, "--model", str(root / "tiny.pt"), "--config",
                       "stark_tiny", "--out", str(tmp_path), f"tracker.present_threshold={threshold}"]) == 0
    with open(tmp_path / "boxes.csv") as f:
        rows = list(csv.DictReader(f))
    present = [int(r["present"]) for r in rows]
    assert len(rows) == 30 and present[0] == 1 and set(present[1:]) == {0, 1}
    assert present[1:] == [int(float(r["score"]) >= threshold) for r in rows[1:]]


def labelled(name: str, visible: list[int], present: list[int], scores=None) -> tuple[EvalSequence, TrackResult]:
    n = len(visible)
    seq = EvalSequence(name, "got10k", "val", FramesRef("images", ()), np.tile([0.0, 0.0, 10.0, 10.0], (n, 1)),
                       np.asarray(visible, dtype=bool), True)
    scores = np.asarray(scores if scores is not None else [np.nan] + [0.5] * (n - 1), dtype=np.float64)
    return seq, TrackResult(np.zeros((n, 4)), scores, np.zeros(n), [], present=np.asarray(present, dtype=bool))


def test_evaluate_scores_absent_calls_by_precision_and_recall_over_scored_frames():
    # frame 0 (no score) is never counted; "a": absent 2-3, called absent 3-4; "b": absent 1, called absent 1
    a, ra = labelled("a", [1, 1, 0, 0, 1], [1, 1, 1, 0, 0])
    b, rb = labelled("b", [1, 0, 1], [1, 0, 1])
    scores = absence_scores({"a": ra, "b": rb}, [a, b])
    assert scores == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "frames": 6,
                      "absent": 3, "predicted_absent": 3}


def test_stark_s_without_scores_has_no_absence_scores():
    s, result = labelled("s", [1, 0, 1], [1, 1, 1], scores=[np.nan] * 3)
    assert absence_scores({"s": result}, [s]) is None
