"""The generated footage: like what users track, and split by source photograph so that validation and
test figures are about scenes training never saw."""
from __future__ import annotations

import numpy as np
import pytest

from stark.platform.ingest.synthetic import PHOTO_SPLITS, make_sequence, make_sequences, photo_split


def test_photograph_splits_share_no_photograph():
    splits = [set(PHOTO_SPLITS[name]) for name in ("train", "val", "test")]
    assert not (splits[0] & splits[1]) and not (splits[0] & splits[2]) and not (splits[1] & splits[2])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_sequence_takes_background_and_object_from_its_split_only(split):
    for seq in make_sequences([f"s{i}" for i in range(6)], 2, (160, 90), seed=3, photos=split):
        background, obj = seq.photographs
        assert background in PHOTO_SPLITS[split] and obj in PHOTO_SPLITS[split] and background != obj


def test_benchmark_splits_map_onto_photograph_splits():
    assert [photo_split(s) for s in ("train", "TRAIN_3", "val", "test", "TEST")] == ["train", "train", "val", "test", "test"]


@pytest.fixture(scope="module")
def footage():
    rng = np.random.default_rng(0)
    return [make_sequence(f"s{i}", 80, (480, 270), rng) for i in range(6)]


def test_frames_are_at_least_480x270_and_objects_cover_1_to_20_percent_of_the_first_frame(footage):
    for seq in footage:
        assert seq.frames.shape[1:] == (270, 480, 3)
        assert seq.visible[0]
        area = seq.boxes_xywh[0, 2] * seq.boxes_xywh[0, 3] / (480 * 270)
        assert 0.008 <= area <= 0.21, (seq.name, area)


def test_every_sequence_has_an_absent_stretch_and_boxes_only_where_the_object_shows(footage):
    for seq in footage:
        assert seq.absent.any() and seq.visible.sum() > len(seq.visible) // 2
        np.testing.assert_array_equal(seq.boxes_xywh[~seq.visible], 0)
        assert (seq.boxes_xywh[seq.visible, 2:] > 0).all()
        assert ((seq.cover > 0) == seq.visible).all()


def test_the_object_moves_and_changes_scale(footage):
    for seq in footage:
        boxes = seq.boxes_xywh[seq.visible]
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        assert np.ptp(centres, axis=0).max() > 10
        areas = boxes[:, 2] * boxes[:, 3]
        assert areas.max() / areas.min() > 1.1


def test_the_same_seed_makes_the_same_sequence():
    a = make_sequence("a", 12, (160, 90), np.random.default_rng(5))
    b = make_sequence("a", 12, (160, 90), np.random.default_rng(5))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.boxes_xywh, b.boxes_xywh)
