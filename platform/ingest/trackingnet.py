"""TrackingNet importer: `TRAIN_0..11/{anno/<vid>.txt, frames/<vid>/<i>.jpg}` and `TEST/` (same layout).

Frames are numbered from 0 without padding. TEST annotations hold only the first box. TrackingNet has
no absence labels: a frame is visible when its box has positive size.

Valid input, beyond well-formed numbers: a video appears in one chunk only; a visible frame's box
overlaps the image.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .sources import (FirstListed, InvalidInputError, Listing, SequenceSource, check_boxes_in_frame, check_count,
                      image_size, numbered_frames, read_annotation_boxes, valid_boxes)

DATASET = "trackingnet"
FPS = 30.0
MARK_ABSENT = "give it the box 0,0,0,0 (TrackingNet has no absence labels)"
_CHUNK = re.compile(r"^(TRAIN_\d+|TEST)$")


def chunks(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(c for c in os.listdir(root) if _CHUNK.match(c) and os.path.isdir(os.path.join(root, c, "anno")))


def looks_like(root: str) -> bool:
    return bool(chunks(root))


def split_of(chunk: str) -> str:
    return "test" if chunk == "TEST" else "train"


def read_trackingnet(root: str, splits: list[str] | None = None) -> Listing:
    listing = Listing()
    listed = FirstListed()  # a video's name is its id in the manifest: one chunk holds it
    for chunk in chunks(root):
        split = split_of(chunk)
        if splits and split not in splits:
            continue
        anno_dir, frames_dir = os.path.join(root, chunk, "anno"), os.path.join(root, chunk, "frames")
        annotated = sorted(f[:-4] for f in os.listdir(anno_dir) if f.endswith(".txt"))
        for name in annotated:
            listing.add(DATASET, split, name, os.path.join(frames_dir, name),
                        lambda: read_sequence(root, chunk, name, listed))
        # a frame folder with no annotation file is a missing entry too
        on_disk = sorted(os.listdir(frames_dir)) if os.path.isdir(frames_dir) else []
        for name in sorted(set(on_disk) - set(annotated)):
            error = InvalidInputError(os.path.join(frames_dir, name),
                                      f"frame folder has no annotation file {chunk}/anno/{name}.txt")
            listing.add_invalid(DATASET, split, name, os.path.join(frames_dir, name), error)
    return listing


def read_sequence(root: str, chunk: str, name: str, listed: FirstListed) -> SequenceSource:
    anno_path = os.path.join(root, chunk, "anno", f"{name}.txt")
    listed.check(name, anno_path)
    folder = os.path.join(root, chunk, "frames", name)
    if not os.path.isdir(folder):
        raise InvalidInputError(anno_path, f"annotation file has no frame folder {chunk}/frames/{name}")
    frames = numbered_frames(folder, lambda i: f"{i}.jpg")
    width, height = image_size(frames[0])
    boxes = read_annotation_boxes(anno_path)
    split = split_of(chunk)
    if split == "test":
        first = boxes[0]
        boxes = np.full((len(frames), 4), np.nan)
        boxes[0] = first
        visible = np.zeros(len(frames), dtype=bool)
        visible[0] = bool(first[2] > 0 and first[3] > 0)
        has_groundtruth = False
    else:
        check_count(anno_path, "boxes", len(boxes), len(frames), folder)
        visible = valid_boxes(boxes)
        has_groundtruth = True
    check_boxes_in_frame(anno_path, boxes, visible, width, height, MARK_ABSENT)
    return SequenceSource(DATASET, split, name, folder, FPS, boxes, visible, has_groundtruth,
                          frame_paths=frames, annotation_paths=[anno_path])
