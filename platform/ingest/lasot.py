"""LaSOT importer: `<class>/<class>-N/{img/%08d.jpg, groundtruth.txt, full_occlusion.txt, out_of_view.txt}`.

The split comes from `training_set.txt` / `testing_set.txt` at the root when present (every listed
sequence must then exist), else from the official test list (Protocol II): listed = test, rest = train.
Visible = not fully occluded and not out of view (and a box with positive size).

Valid input, beyond well-formed numbers: a sequence folder sits in its own class's folder (`cat/cat-3`,
never `dog/cat-3`); a sequence is listed once across both list files; the occlusion and out-of-view
flags are 0/1; a visible frame's box overlaps the image.
"""
from __future__ import annotations

import os
import re

from .lasot_split import LASOT_TEST_SEQUENCES
from .sources import (FirstListed, InvalidInputError, Listing, SequenceSource, check_boxes_in_frame, check_count,
                      image_size, numbered_frames, read_annotation_boxes, read_label_row, read_text_lines,
                      valid_boxes)

DATASET = "lasot"
FPS = 30.0
LIST_FILES = {"train": "training_set.txt", "test": "testing_set.txt"}
FLAG_VALUES = range(0, 2)  # full_occlusion.txt / out_of_view.txt: 0 or 1 per frame
MARK_ABSENT = "set its value in out_of_view.txt to 1"
_SEQUENCE_NAME = re.compile(r"^(?P<cls>.+)-(?P<num>\d+)$")


def _sequence_folders(root: str) -> tuple[dict[str, str], list[tuple[str, str, InvalidInputError]]]:
    """name -> folder for every `<class>/<class>-N` folder on disk; and (name, folder, error) for every
    folder that holds a sequence (img/ or groundtruth.txt) in the wrong place: in another class's folder
    (`dog/cat-3`), or not named `<class>-N`."""
    found, misplaced = {}, []
    for cls in sorted(os.listdir(root)):
        class_dir = os.path.join(root, cls)
        if not os.path.isdir(class_dir):
            continue
        for name in sorted(os.listdir(class_dir)):
            folder = os.path.join(class_dir, name)
            if not os.path.isdir(folder):
                continue
            match = _SEQUENCE_NAME.match(name)
            if match and match["cls"] == cls:
                found[name] = folder
            elif os.path.isdir(os.path.join(folder, "img")) or os.path.isfile(os.path.join(folder, "groundtruth.txt")):
                if match:
                    message = (f"sequence {name!r} is in class folder {cls!r}, but its name says class "
                               f"{match['cls']!r}: move it to {match['cls']}/{name}")
                else:
                    message = f"folder holds a sequence but is not named {cls}-<N> (LaSOT's <class>/<class>-<N>)"
                misplaced.append((name, folder, InvalidInputError(folder, message)))
    return found, misplaced


def looks_like(root: str) -> bool:
    return os.path.isdir(root) and any(os.path.isdir(os.path.join(f, "img"))
                                       for f in _sequence_folders(root)[0].values())


def read_lasot(root: str, splits: list[str] | None = None) -> Listing:
    folders, misplaced = _sequence_folders(root)
    listing = Listing()
    if any(os.path.isfile(os.path.join(root, f)) for f in LIST_FILES.values()):
        # the lists decide what is imported: a misplaced folder is an error when it is listed
        wrong_place = {name: error for name, _, error in misplaced}
        listed = FirstListed()
        for split, list_file in LIST_FILES.items():
            list_path = os.path.join(root, list_file)
            if (splits and split not in splits) or not os.path.isfile(list_path):
                continue
            for line_no, name in enumerate(read_text_lines(list_path), start=1):
                name = name.strip()
                folder = folders.get(name, os.path.join(root, name.rsplit("-", 1)[0], name))
                listing.add(DATASET, split, name, folder,
                            lambda: _listed_sequence(folders, wrong_place, listed, name, split, list_path, line_no))
        return listing
    for name, folder in folders.items():
        split = "test" if name in LASOT_TEST_SEQUENCES else "train"
        if not splits or split in splits:
            listing.add(DATASET, split, name, folder, lambda: read_sequence(folder, split, name))
    for name, folder, error in misplaced:  # without lists, every sequence folder on disk is imported
        split = "test" if name in LASOT_TEST_SEQUENCES else "train"
        if not splits or split in splits:
            listing.add_invalid(DATASET, split, name, folder, error)
    return listing


def _listed_sequence(folders: dict[str, str], wrong_place: dict[str, InvalidInputError], listed: FirstListed,
                     name: str, split: str, list_path: str, line_no: int) -> SequenceSource:
    listed.check(name, list_path, line_no)
    if name not in folders:
        if name in wrong_place:
            raise wrong_place[name]
        raise InvalidInputError(list_path, f"sequence {name!r} is listed but its folder <class>/{name} is missing",
                                line_no)
    return read_sequence(folders[name], split, name)


def read_sequence(folder: str, split: str, name: str) -> SequenceSource:
    frames = numbered_frames(os.path.join(folder, "img"), lambda i: f"{i + 1:08d}.jpg")
    width, height = image_size(frames[0])
    gt_path = os.path.join(folder, "groundtruth.txt")
    occlusion_path = os.path.join(folder, "full_occlusion.txt")
    out_of_view_path = os.path.join(folder, "out_of_view.txt")
    boxes = read_annotation_boxes(gt_path)
    check_count(gt_path, "boxes", len(boxes), len(frames), os.path.join(folder, "img"))
    occluded = read_label_row(occlusion_path, FLAG_VALUES)
    out_of_view = read_label_row(out_of_view_path, FLAG_VALUES)
    for path, labels in ((occlusion_path, occluded), (out_of_view_path, out_of_view)):
        if len(labels) != len(frames):
            raise InvalidInputError(path, f"{len(labels)} labels but {len(frames)} frames in {folder}/img", 1)
    visible = (occluded == 0) & (out_of_view == 0) & valid_boxes(boxes)
    check_boxes_in_frame(gt_path, boxes, visible, width, height, MARK_ABSENT)
    return SequenceSource(DATASET, split, name, folder, FPS, boxes, visible, True, frame_paths=frames,
                          annotation_paths=[gt_path, occlusion_path, out_of_view_path])
