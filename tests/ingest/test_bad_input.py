"""Input that is well-formed but wrong is refused, naming the file, the line and the rule it breaks, in
every layout where the rule applies: nothing of it is imported as if it were valid.

Each case breaks one thing in a copy of a small generated tree (160x120 frames, 3 train sequences of 30
frames and 1 test sequence per layout; see conftest.py) and reads the tree back as `stark ingest` does.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from stark.platform.ingest.footage import fit_to_frame_count
from stark.platform.ingest.importers import read_source
from stark.platform.ingest.sources import InvalidInputError


def the_error(root: str) -> InvalidInputError:
    """The one invalid sequence of a tree (the test broke exactly one)."""
    _, listing = read_source(root)
    assert len(listing.invalid) == 1, [str(s.error) for s in listing.invalid]
    return listing.invalid[0].error


def replace_line(path: str, line: int, text: str) -> None:
    lines = open(path).read().splitlines()
    lines[line - 1] = text
    open(path, "w").write("\n".join(lines) + "\n")


def first_listed(root: str, list_file: str) -> str:
    return open(os.path.join(root, list_file)).readline().strip()


def lasot_folder(root: str, name: str) -> str:
    return os.path.join(root, name.rsplit("-", 1)[0], name)


def annotation_of_first_train_sequence(root: str, layout: str) -> tuple[str, int]:
    """(the file holding its boxes, the line of frame 4's box); frame 4 is visible in every generated
    train sequence of these trees."""
    if layout == "got10k":
        return os.path.join(root, "train", first_listed(root, "train/list.txt"), "groundtruth.txt"), 5
    if layout == "lasot":
        return os.path.join(lasot_folder(root, first_listed(root, "training_set.txt")), "groundtruth.txt"), 5
    if layout == "trackingnet":
        anno = os.path.join(root, "TRAIN_0", "anno")
        return os.path.join(anno, sorted(os.listdir(anno))[0]), 5
    csv = sorted(f for f in os.listdir(root) if f.endswith(".csv"))[0]
    lines = open(os.path.join(root, csv)).read().splitlines()
    return os.path.join(root, csv), next(i for i, line in enumerate(lines, start=1) if line.startswith("4,"))


# --- boxes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["got10k", "lasot", "trackingnet", "footage"])
@pytest.mark.parametrize("box", ["500,10,20,20", "10,130,20,20", "-40,10,20,20", "10,-25,20,20"])
def test_a_visible_frame_whose_box_lies_wholly_outside_the_image_is_refused_at_its_line(copy_of, layout, box):
    root = copy_of(layout)
    path, line = annotation_of_first_train_sequence(root, layout)
    replace_line(path, line, f"4,{box}" if layout == "footage" else box)
    error = the_error(root)
    assert (error.path, error.line) == (path, line)
    assert f"box {box} of frame 4 lies entirely outside the 160x120 image" in error.message
    assert "if the target is out of view there" in error.message  # and how to say so in this layout


def test_a_box_that_only_overlaps_the_image_edge_is_kept_as_visible(copy_of):
    root = copy_of("got10k")
    path, line = annotation_of_first_train_sequence(root, "got10k")
    replace_line(path, line, "150,110,40,40")  # 10x10 of it inside the 160x120 frame
    _, listing = read_source(root)
    assert not listing.invalid
    sequence = next(s for s in listing.sequences if s.frame_paths[0].startswith(os.path.dirname(path)))
    assert sequence.visible[4]


def test_a_box_outside_the_image_in_a_frame_labelled_absent_is_accepted_as_absent(copy_of):
    root = copy_of("got10k")
    path, line = annotation_of_first_train_sequence(root, "got10k")
    replace_line(path, line, "500,10,20,20")
    replace_line(os.path.join(os.path.dirname(path), "absence.label"), line, "1")
    _, listing = read_source(root)
    assert not listing.invalid
    sequence = next(s for s in listing.sequences if s.frame_paths[0].startswith(os.path.dirname(path)))
    assert not sequence.visible[4]


def test_the_first_box_of_a_test_sequence_outside_the_image_is_refused(copy_of):
    root = copy_of("got10k")
    path = os.path.join(root, "test", first_listed(root, "test/list.txt"), "groundtruth.txt")
    replace_line(path, 1, "10,300,20,20")
    error = the_error(root)
    assert (error.path, error.line) == (path, 1) and "entirely outside" in error.message


# --- labels -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label_file, value, fragment", [
    ("absence.label", "3", "label 3 is out of range: absence.label holds 0..1"),
    ("absence.label", "-1", "label -1 is out of range: absence.label holds 0..1"),
    ("cover.label", "9", "label 9 is out of range: cover.label holds 0..8"),
    ("cover.label", "0.5", "expected an integer label, got '0.5'"),
])
def test_a_got10k_label_out_of_its_range_is_refused_at_its_line(copy_of, label_file, value, fragment):
    root = copy_of("got10k")
    path = os.path.join(root, "train", first_listed(root, "train/list.txt"), label_file)
    replace_line(path, 7, value)
    error = the_error(root)
    assert (error.path, error.line) == (path, 7) and fragment in error.message


@pytest.mark.parametrize("label_file", ["full_occlusion.txt", "out_of_view.txt"])
def test_a_lasot_flag_other_than_0_or_1_is_refused_naming_its_frame(copy_of, label_file):
    root = copy_of("lasot")
    path = os.path.join(lasot_folder(root, first_listed(root, "training_set.txt")), label_file)
    flags = open(path).read().strip().split(",")
    flags[6] = "2"
    open(path, "w").write(",".join(flags) + "\n")
    error = the_error(root)
    assert (error.path, error.line) == (path, 1)
    assert f"value 7 (frame 6): label 2 is out of range: {label_file} holds 0..1" in error.message


# --- list entries -------------------------------------------------------------------------------------
def test_a_sequence_listed_twice_in_list_txt_is_refused_at_the_second_entry(copy_of):
    root = copy_of("got10k")
    list_path = os.path.join(root, "train", "list.txt")
    name = first_listed(root, "train/list.txt")
    with open(list_path, "a") as f:
        f.write(f"{name}\n")
    error = the_error(root)
    assert (error.path, error.line) == (list_path, 4)
    assert f"sequence {name!r} appears twice (first: line 1)" in error.message


def test_with_skip_invalid_a_sequence_listed_twice_is_imported_once(copy_of):
    root = copy_of("got10k")
    name = first_listed(root, "train/list.txt")
    with open(os.path.join(root, "train", "list.txt"), "a") as f:
        f.write(f"{name}\n")
    _, listing = read_source(root)
    names = [s.name for s in listing.sequences if s.split == "train"]
    assert sorted(names) == sorted(set(names)) and name in names and len(names) == 3
    assert [s.name for s in listing.invalid] == [name]


def test_a_got10k_sequence_listed_in_two_splits_is_refused(copy_of):
    root = copy_of("got10k")
    name = first_listed(root, "train/list.txt")
    shutil.copytree(os.path.join(root, "train", name), os.path.join(root, "test", name))
    with open(os.path.join(root, "test", "list.txt"), "a") as f:
        f.write(f"{name}\n")
    error = the_error(root)
    assert (error.path, error.line) == (os.path.join(root, "test", "list.txt"), 2)
    assert f"first: {os.path.join(root, 'train', 'list.txt')}:1" in error.message


def test_a_lasot_sequence_in_both_the_training_and_the_testing_list_is_refused(copy_of):
    root = copy_of("lasot")
    name = first_listed(root, "training_set.txt")
    with open(os.path.join(root, "testing_set.txt"), "a") as f:
        f.write(f"{name}\n")
    error = the_error(root)
    assert (error.path, error.line) == (os.path.join(root, "testing_set.txt"), 2)
    assert f"first: {os.path.join(root, 'training_set.txt')}:1" in error.message


def test_a_trackingnet_video_in_two_chunks_is_refused(copy_of):
    root = copy_of("trackingnet")
    anno = os.path.join(root, "TRAIN_0", "anno")
    name = sorted(os.listdir(anno))[0][:-4]
    os.makedirs(os.path.join(root, "TRAIN_1", "anno"))
    shutil.copy(os.path.join(anno, f"{name}.txt"), os.path.join(root, "TRAIN_1", "anno"))
    shutil.copytree(os.path.join(root, "TRAIN_0", "frames", name), os.path.join(root, "TRAIN_1", "frames", name))
    error = the_error(root)
    assert error.path == os.path.join(root, "TRAIN_1", "anno", f"{name}.txt")
    assert f"appears twice (first: {os.path.join(anno, name + '.txt')})" in error.message


def test_two_videos_of_one_name_sharing_a_box_file_are_refused(copy_of):
    root = copy_of("footage")
    shutil.copy(os.path.join(root, "clip_00.mp4"), os.path.join(root, "clip_00.mkv"))
    error = the_error(root)
    assert error.path == os.path.join(root, "clip_00.mp4")  # the second of the two, in name order
    assert "clip_00.mkv has the same name 'clip_00': both would read the box file clip_00.csv" in error.message


# --- folders ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_lists", [True, False], ids=["listed", "no-list-files"])
def test_a_lasot_sequence_in_another_class_folder_is_refused_naming_where_it_belongs(copy_of, with_lists):
    root = copy_of("lasot")
    name = first_listed(root, "training_set.txt")  # e.g. airplane-2
    cls = name.rsplit("-", 1)[0]
    other = next(c for c in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, c)) and c != cls)
    shutil.move(lasot_folder(root, name), os.path.join(root, other, name))
    if not with_lists:
        os.remove(os.path.join(root, "training_set.txt"))
        os.remove(os.path.join(root, "testing_set.txt"))
    error = the_error(root)
    assert error.path == os.path.join(root, other, name)
    assert f"sequence {name!r} is in class folder {other!r}, but its name says class {cls!r}" in error.message
    assert f"move it to {cls}/{name}" in error.message


def test_a_folder_in_a_lasot_class_folder_that_holds_a_sequence_under_another_name_is_refused(copy_of):
    root = copy_of("lasot")
    for list_file in ("training_set.txt", "testing_set.txt"):
        os.remove(os.path.join(root, list_file))
    name = sorted(os.listdir(os.path.join(root, "bear")))[0]
    os.rename(os.path.join(root, "bear", name), os.path.join(root, "bear", "my copy"))
    error = the_error(root)
    assert error.path == os.path.join(root, "bear", "my copy") and "is not named bear-<N>" in error.message


# --- footage headers ----------------------------------------------------------------------------------
def test_a_footage_header_in_another_column_order_is_read_by_name(copy_of, sources):
    root = copy_of("footage")
    csv = os.path.join(root, "clip_00.csv")
    rows = [line.split(",") for line in open(csv).read().splitlines()[1:]]
    with open(csv, "w") as f:  # frame,w,h,x,y: the same boxes, columns moved
        f.write("frame,w,h,x,y\n" + "".join(f"{r[0]},{r[3]},{r[4]},{r[1]},{r[2]}\n" for r in rows))
    _, listing = read_source(root)
    assert not listing.invalid
    got = fit_to_frame_count(next(s for s in listing.sequences if s.name == "clip_00"), 30)
    written = next(s for s in sources[1]["footage"]["train"] if s.name == "clip_00")
    np.testing.assert_array_equal(got.visible, written.visible)
    np.testing.assert_array_equal(got.boxes_xywh[got.visible], written.boxes_xywh[written.visible])


def test_a_footage_header_with_upper_case_names_and_a_byte_order_mark_is_a_header(copy_of):
    root = copy_of("footage")
    csv = os.path.join(root, "clip_01.csv")
    lines = open(csv).read().splitlines()
    open(csv, "w", encoding="utf-8-sig").write("\n".join(["Frame,X,Y,W,H"] + lines[1:]) + "\n")
    _, listing = read_source(root)
    assert not listing.invalid


@pytest.mark.parametrize("header", ["frame,left,top,w,h", "frame,x,y,w", "frame,x,y,w,h,score", "frame,x,x,w,h"])
def test_a_footage_header_that_does_not_name_frame_x_y_w_h_is_refused_at_line_1(copy_of, header):
    root = copy_of("footage")
    csv = os.path.join(root, "clip_02.csv")
    replace_line(csv, 1, header)
    error = the_error(root)
    assert (error.path, error.line) == (csv, 1)
    assert f"header {header!r} does not name the columns frame,x,y,w,h (in any order)" in error.message


def test_a_footage_file_without_a_header_is_read_as_frame_x_y_w_h(copy_of, sources):
    root = copy_of("footage")
    csv = os.path.join(root, "clip_00.csv")
    lines = open(csv).read().splitlines()
    open(csv, "w").write("\n".join(lines[1:]) + "\n")
    _, listing = read_source(root)
    got = fit_to_frame_count(next(s for s in listing.sequences if s.name == "clip_00"), 30)
    written = next(s for s in sources[1]["footage"]["train"] if s.name == "clip_00")
    np.testing.assert_array_equal(got.boxes_xywh[got.visible], written.boxes_xywh[written.visible])
