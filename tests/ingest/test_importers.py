"""Importers: each benchmark layout reads back what was written, and bad input is named by file and line."""
from __future__ import annotations

import os

import numpy as np
import pytest

from stark.platform.ingest.clips import EncodeSettings
from stark.platform.ingest.footage import fit_to_frame_count
from stark.platform.ingest.importers import detect_layout, read_source
from stark.platform.ingest.sequence_clips import ClipSettings, ingest_sequence
from stark.platform.ingest.sources import InvalidInputError


def only(listing, split="train"):
    assert not listing.invalid, [str(s.error) for s in listing.invalid]
    return {s.name: s for s in listing.sequences if s.split == split}


@pytest.mark.parametrize("layout", ["got10k", "lasot", "trackingnet", "footage"])
def test_each_layout_is_detected_and_reads_back_the_written_boxes_and_visibility(sources, layout):
    root, written = sources
    found, listing = read_source(str(root / layout))
    assert found == layout == detect_layout(str(root / layout))
    train_key = "TRAIN_0" if layout == "trackingnet" else "train"
    read = only(listing)
    assert sorted(read) == sorted(s.name for s in written[layout][train_key])
    for seq in written[layout][train_key]:
        got = read[seq.name]
        if layout == "footage":  # frame count is known once decoded; boxes exist only where visible
            got = fit_to_frame_count(got, seq.num_frames)
            np.testing.assert_array_equal(got.boxes_xywh[seq.visible], seq.boxes_xywh[seq.visible])
        else:
            np.testing.assert_array_equal(got.boxes_xywh, seq.boxes_xywh)
        expected_visible = seq.visible if layout != "trackingnet" else (seq.boxes_xywh[:, 2:] > 0).all(1)
        np.testing.assert_array_equal(got.visible, expected_visible)
        assert got.has_groundtruth and got.num_frames == seq.num_frames


@pytest.mark.parametrize("layout", ["got10k", "lasot", "trackingnet"])
def test_test_splits_carry_only_the_first_box_where_the_benchmark_hides_the_rest(sources, layout):
    root, written = sources
    _, listing = read_source(str(root / layout))
    test = [s for s in listing.sequences if s.split == "test"]
    assert len(test) == 1
    if layout == "lasot":  # LaSOT publishes test boxes
        assert test[0].has_groundtruth
        return
    assert not test[0].has_groundtruth
    test_key = "TEST" if layout == "trackingnet" else "test"
    np.testing.assert_array_equal(test[0].boxes_xywh[0], written[layout][test_key][0].boxes_xywh[0])
    assert np.isnan(test[0].boxes_xywh[1:]).all() and not test[0].visible[1:].any()


def test_lasot_without_list_files_uses_the_official_test_list(sources, copy_of):
    root = copy_of("lasot")
    os.remove(os.path.join(root, "training_set.txt"))
    os.remove(os.path.join(root, "testing_set.txt"))
    _, listing = read_source(root)
    test_names = {s.name for s in listing.sequences if s.split == "test"}
    assert test_names == {s.name for s in sources[1]["lasot"]["test"]}


def _error(root: str) -> InvalidInputError:
    _, listing = read_source(root)
    assert len(listing.invalid) == 1, [str(s.error) for s in listing.invalid]
    return listing.invalid[0].error


def _first_train_sequence(root: str, layout: str) -> str:
    if layout == "got10k":
        name = open(os.path.join(root, "train", "list.txt")).readline().strip()
        return os.path.join(root, "train", name)
    raise AssertionError(layout)


def test_more_boxes_than_frames_names_the_groundtruth_line_past_the_last_frame(copy_of):
    root = copy_of("got10k")
    folder = _first_train_sequence(root, "got10k")
    with open(os.path.join(folder, "groundtruth.txt"), "a") as f:
        f.write("1,2,3,4\n")
    error = _error(root)
    assert error.path.endswith("groundtruth.txt") and error.line == 31
    assert "31 boxes but 30 frames" in str(error)


def test_a_nan_box_is_named_by_file_and_line(copy_of):
    root = copy_of("lasot")
    name = open(os.path.join(root, "training_set.txt")).readline().strip()
    path = os.path.join(root, name.rsplit("-", 1)[0], name, "groundtruth.txt")
    lines = open(path).read().splitlines()
    lines[6] = "10,20,nan,30"
    open(path, "w").write("\n".join(lines) + "\n")
    error = _error(root)
    assert (error.path, error.line) == (path, 7) and "NaN" in str(error)


def test_a_negative_size_is_named_by_file_and_line(copy_of):
    root = copy_of("trackingnet")
    anno_dir = os.path.join(root, "TRAIN_0", "anno")
    path = os.path.join(anno_dir, sorted(os.listdir(anno_dir))[0])
    lines = open(path).read().splitlines()
    lines[2] = "10,20,-5,30"
    open(path, "w").write("\n".join(lines) + "\n")
    error = _error(root)
    assert (error.path, error.line) == (path, 3) and "negative" in str(error)


def test_a_sequence_listed_but_missing_names_the_list_line(copy_of):
    root = copy_of("got10k")
    with open(os.path.join(root, "train", "list.txt"), "a") as f:
        f.write("GOT-10k_Train_999999\n")
    error = _error(root)
    assert error.path.endswith(os.path.join("train", "list.txt")) and error.line == 4
    assert "GOT-10k_Train_999999" in str(error)


def test_an_empty_sequence_is_an_error(copy_of):
    root = copy_of("got10k")
    folder = _first_train_sequence(root, "got10k")
    for name in os.listdir(folder):
        if name.endswith(".jpg"):
            os.remove(os.path.join(folder, name))
    error = _error(root)
    assert error.path == folder and "empty sequence" in str(error)


def test_a_video_without_a_box_file_and_a_box_past_the_last_frame_are_named(copy_of, sources):
    root = copy_of("footage")
    names = sorted(s.name for s in sources[1]["footage"]["train"])
    os.remove(os.path.join(root, f"{names[0]}.csv"))
    error = _error(root)
    assert error.path.endswith(f"{names[0]}.mp4") and "no box file" in str(error)

    csv = os.path.join(root, f"{names[1]}.csv")
    with open(csv, "a") as f:
        f.write("45,1,1,5,5\n")
    _, listing = read_source(root)
    source = next(s for s in listing.sequences if s.name == names[1])
    line = len(open(csv).read().splitlines())
    with pytest.raises(InvalidInputError) as info:
        fit_to_frame_count(source, 30)
    assert (info.value.path, info.value.line) == (csv, line) and "frame 45" in str(info.value)


def test_a_truncated_image_is_named_and_leaves_no_clip_behind(copy_of, tmp_path):
    root = copy_of("got10k")
    folder = _first_train_sequence(root, "got10k")
    frame = os.path.join(folder, "00000020.jpg")
    data = open(frame, "rb").read()
    open(frame, "wb").write(data[: len(data) // 3])
    _, listing = read_source(root)  # annotations are fine: the frame fails when it is decoded
    source = next(s for s in listing.sequences if s.source_path == folder)
    dest = str(tmp_path / "dest")
    with pytest.raises(InvalidInputError) as info:
        ingest_sequence(source, dest, ClipSettings(EncodeSettings(), max_clip_frames=8))  # 2 clips before it
    assert info.value.path == frame and "truncated" in str(info.value)
    left = [f for _, _, files in os.walk(dest) for f in files]
    assert left == []


def test_skipped_sequences_are_listed_with_their_error(copy_of):
    root = copy_of("got10k")
    with open(os.path.join(root, "train", "list.txt"), "a") as f:
        f.write("GOT-10k_Train_999999\n")
    _, listing = read_source(root)
    assert len(listing.sequences) == 4  # 3 train + 1 test still import
    assert [s.name for s in listing.invalid] == ["GOT-10k_Train_999999"]
    assert "list.txt:4" in listing.invalid[0].to_json()["error"]
