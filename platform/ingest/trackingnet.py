"""TrackingNet importer: `TRAIN_0..11/{anno/<vid>.txt, frames/<vid>/<i>.jpg}` and `TEST/` (same layout).

Frames are numbered from 0 without padding. TEST annotations hold only the first box. TrackingNet has
no absence labels: a frame is visible when its box has positive size.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .sources import (InvalidInputError, Listing, SequenceSource, check_count, numbered_frames, read_annotation_boxes,
                      valid_boxes)

DATASET = "trackingnet"
FPS = 30.0
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
    for chunk in chunks(root):
        split = split_of(chunk)
        if splits and split not in splits:
            continue
        anno_dir, frames_dir = os.path.join(root, chunk, "anno"), os.path.join(root, chunk, "frames")
        annotated = sorted(f[:-4] for f in os.listdir(anno_dir) if f.endswith(".txt"))
        for name in annotated:
            listing.add(DATASET, split, name, os.path.join(frames_dir, name),
                        lambda: read_sequence(root, chunk, name))
        # a frame folder with no annotation file is a missing entry too
        on_disk = sorted(os.listdir(frames_dir)) if os.path.isdir(frames_dir) else []
        for name in sorted(set(on_disk) - set(annotated)):
            error = InvalidInputError(os.path.join(frames_dir, name),
                                      f"frame folder has no annotation file {chunk}/anno/{name}.txt")
            listing.add(DATASET, split, name, os.path.join(frames_dir, name), lambda: _raise(error))
    return listing


def _raise(error: Exception):
    raise error


def read_sequence(root: str, chunk: str, name: str) -> SequenceSource:
    anno_path = os.path.join(root, chunk, "anno", f"{name}.txt")
    folder = os.path.join(root, chunk, "frames", name)
    if not os.path.isdir(folder):
        raise InvalidInputError(anno_path, f"annotation file has no frame folder {chunk}/frames/{name}")
    frames = numbered_frames(folder, lambda i: f"{i}.jpg")
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
    return SequenceSource(DATASET, split, name, folder, FPS, boxes, visible, has_groundtruth,
                          frame_paths=frames, annotation_paths=[anno_path])
