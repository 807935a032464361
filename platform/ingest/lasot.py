"""LaSOT importer: `<class>/<class>-N/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt, out_of_view.txt}`.

The split comes from `training_set.txt` / `testing_set.txt` at the root when present (every listed
sequence must then exist), else from the official test list (Protocol II): listed = test, rest = train.
Visible = not fully occluded and not out of view (and a box with positive size).
"""
from __future__ import annotations

import os
import re

from .lasot_split import LASOT_TEST_SEQUENCES
from .sources import (InvalidInputError, Listing, SequenceSource, check_count, numbered_frames, read_annotation_boxes,
                      read_label_row, read_text_lines, valid_boxes)

DATASET = "lasot"
FPS = 30.0
LIST_FILES = {"train": "training_set.txt", "test": "testing_set.txt"}
_SEQUENCE_NAME = re.compile(r"^(?P<cls>.+)-(?P<num>\d+)$")


def _sequence_folders(root: str) -> dict[str, str]:
    """name -> folder for every `<class>/<class>-N` folder on disk."""
    found = {}
    for cls in sorted(os.listdir(root)):
        class_dir = os.path.join(root, cls)
        if not os.path.isdir(class_dir):
            continue
        for name in sorted(os.listdir(class_dir)):
            match = _SEQUENCE_NAME.match(name)
            if match and match["cls"] == cls and os.path.isdir(os.path.join(class_dir, name)):
                found[name] = os.path.join(class_dir, name)
    return found


def looks_like(root: str) -> bool:
    return os.path.isdir(root) and any(os.path.isdir(os.path.join(f, "img")) for f in _sequence_folders(root).values())


def read_lasot(root: str, splits: list[str] | None = None) -> Listing:
    folders = _sequence_folders(root)
    listing = Listing()
    if any(os.path.isfile(os.path.join(root, f)) for f in LIST_FILES.values()):
        for split, list_file in LIST_FILES.items():
            list_path = os.path.join(root, list_file)
            if (splits and split not in splits) or not os.path.isfile(list_path):
                continue
            for line_no, name in enumerate(read_text_lines(list_path), start=1):
                name = name.strip()
                folder = folders.get(name, os.path.join(root, name.rsplit("-", 1)[0], name))
                listing.add(DATASET, split, name, folder,
                            lambda: _listed_sequence(folders, name, split, list_path, line_no))
        return listing
    for name, folder in folders.items():
        split = "test" if name in LASOT_TEST_SEQUENCES else "train"
        if not splits or split in splits:
            listing.add(DATASET, split, name, folder, lambda: read_sequence(folder, split, name))
    return listing


def _listed_sequence(folders: dict[str, str], name: str, split: str, list_path: str, line_no: int) -> SequenceSource:
    if name not in folders:
        raise InvalidInputError(list_path, f"sequence {name!r} is listed but its folder <class>/{name} is missing",
                                line_no)
    return read_sequence(folders[name], split, name)


def read_sequence(folder: str, split: str, name: str) -> SequenceSource:
    frames = numbered_frames(os.path.join(folder, "img"), lambda i: f"{i + 1:08d}.jpg")
    gt_path = os.path.join(folder, "groundtruth.txt")
    occlusion_path = os.path.join(folder, "full_occlusion.txt")
    out_of_view_path = os.path.join(folder, "out_of_view.txt")
    boxes = read_annotation_boxes(gt_path)
    check_count(gt_path, "boxes", len(boxes), len(frames), os.path.join(folder, "img"))
    occluded = read_label_row(occlusion_path)
    out_of_view = read_label_row(out_of_view_path)
    for path, labels in ((occlusion_path, occluded), (out_of_view_path, out_of_view)):
        if len(labels) != len(frames):
            raise InvalidInputError(path, f"{len(labels)} labels but {len(frames)} frames in {folder}/img", 1)
    visible = (occluded == 0) & (out_of_view == 0) & valid_boxes(boxes)
    return SequenceSource(DATASET, split, name, folder, FPS, boxes, visible, True, frame_paths=frames,
                          annotation_paths=[gt_path, occlusion_path, out_of_view_path])
