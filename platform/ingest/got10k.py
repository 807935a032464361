"""GOT-10k importer: `{train,val,test}/list.txt` and `<seq>/{00000001.jpg.., groundtruth.txt,
absence.label, cover.label, meta_info.ini}`.

Visible = not absent and cover > 0 (and a box with positive size). The test split ships only the
first box and no labels: its sequences are imported with `has_groundtruth=False`.

Valid input, beyond well-formed numbers: a sequence is listed once across the splits' list.txt files;
absence.label holds 0/1 and cover.label 0..8 (eighths of the target in view); a visible frame's box
overlaps the image.
"""
from __future__ import annotations

import os

import numpy as np

from .sources import (FirstListed, InvalidInputError, Listing, SequenceSource, check_boxes_in_frame, check_count,
                      image_size, numbered_frames, read_annotation_boxes, read_label_lines, read_text_lines,
                      valid_boxes)

DATASET = "got10k"
SPLITS = ("train", "val", "test")
FPS = 10.0  # GOT-10k videos are annotated at 10 frames per second
# The label ranges, as the official loaders read them (STARK lib/train/dataset/got10k.py: absence is a
# flag, and `visible_ratio = cover / 8`).
ABSENCE_VALUES = range(0, 2)  # 0 = present, 1 = absent
COVER_VALUES = range(0, 9)  # 0..8: eighths of the target in view
MARK_ABSENT = "set its absence.label line to 1"


def looks_like(root: str) -> bool:
    return any(os.path.isfile(os.path.join(root, split, "list.txt")) for split in SPLITS)


def read_got10k(root: str, splits: list[str] | None = None) -> Listing:
    listing = Listing()
    listed = FirstListed()  # across splits too: a sequence's name is its id in the manifest
    present = [s for s in SPLITS if os.path.isfile(os.path.join(root, s, "list.txt"))]
    for split in splits or present:
        list_path = os.path.join(root, split, "list.txt")
        if not os.path.isfile(list_path):
            raise InvalidInputError(list_path, f"split {split!r} has no list.txt")
        names = read_text_lines(list_path)
        for line_no, name in enumerate(names, start=1):
            name = name.strip()
            folder = os.path.join(root, split, name)
            listing.add(DATASET, split, name, folder,
                        lambda: read_sequence(folder, split, name, list_path, line_no, listed))
    return listing


def read_sequence(folder: str, split: str, name: str, list_path: str, line_no: int,
                  listed: FirstListed) -> SequenceSource:
    if not name:
        raise InvalidInputError(list_path, "empty sequence name", line_no)
    listed.check(name, list_path, line_no)
    if not os.path.isdir(folder):
        raise InvalidInputError(list_path, f"sequence {name!r} is listed but its folder {folder} is missing", line_no)
    frames = numbered_frames(folder, lambda i: f"{i + 1:08d}.jpg")
    width, height = image_size(frames[0])
    gt_path = os.path.join(folder, "groundtruth.txt")
    boxes = read_annotation_boxes(gt_path)
    annotations = [gt_path]
    if split == "test":
        # only the first box is given; the rest stay unknown (NaN)
        first = boxes[:1]
        boxes = np.full((len(frames), 4), np.nan)
        boxes[0] = first[0]
        visible = np.zeros(len(frames), dtype=bool)
        visible[0] = bool(valid_boxes(first)[0])
        has_groundtruth = False
    else:
        check_count(gt_path, "boxes", len(boxes), len(frames), folder)
        absence_path, cover_path = os.path.join(folder, "absence.label"), os.path.join(folder, "cover.label")
        absent = read_label_lines(absence_path, ABSENCE_VALUES)
        cover = read_label_lines(cover_path, COVER_VALUES)
        check_count(absence_path, "labels", len(absent), len(frames), folder)
        check_count(cover_path, "labels", len(cover), len(frames), folder)
        visible = (absent == 0) & (cover > 0) & valid_boxes(boxes)
        annotations += [absence_path, cover_path]
        has_groundtruth = True
    check_boxes_in_frame(gt_path, boxes, visible, width, height, MARK_ABSENT)
    meta = os.path.join(folder, "meta_info.ini")
    if os.path.isfile(meta):
        annotations.append(meta)
    return SequenceSource(DATASET, split, name, folder, FPS, boxes, visible, has_groundtruth,
                          frame_paths=frames, annotation_paths=annotations)
