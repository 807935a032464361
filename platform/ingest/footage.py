"""A user's own footage: video files (.mp4/.avi/.mkv) with a box file per video, `<video stem>.csv`:

    frame,x,y,w,h        <- header (optional; its names say the column order, e.g. frame,w,h,x,y)
    0,120,80,40,60       <- frame numbers from 0; boxes xywh in pixels
    1,122,81,40,60
    5,130,85,41,60       <- frames 2-4 absent: no row (or a row with empty x,y,w,h)

Frames with no box are absent (not visible). The video's frame count is known only once it is decoded,
so "a box for a frame past the end" is reported by the encoder, naming the CSV line.

Valid input, beyond well-formed numbers: a header names exactly the columns frame,x,y,w,h (any order;
without a header they are in that order); one video per name (`a.mp4` and `a.avi` would share a.csv);
every box overlaps the video's frame.
"""
from __future__ import annotations

import os

import numpy as np

from .sources import (InvalidInputError, Listing, SequenceSource, check_boxes_in_frame, parse_box, read_text_lines,
                      video_stream)

DATASET = "footage"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv")
COLUMNS = ("frame", "x", "y", "w", "h")
MARK_ABSENT = "leave its row out (or its x,y,w,h empty)"


def videos(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(os.path.join(root, f) for f in os.listdir(root) if f.lower().endswith(VIDEO_EXTENSIONS))


def looks_like(root: str) -> bool:
    return bool(videos(root))


def read_footage(root: str, split: str = "train") -> Listing:
    listing = Listing()
    first_of: dict[str, str] = {}
    for video in videos(root):
        name = os.path.splitext(os.path.basename(video))[0]
        if name in first_of:
            listing.add_invalid(DATASET, split, name, video, InvalidInputError(
                video, f"{os.path.basename(first_of[name])} has the same name {name!r}: both would read the box "
                       f"file {name}.csv; rename one (a sequence's name is its id in the manifest)"))
            continue
        first_of[name] = video
        listing.add(DATASET, split, name, video, lambda: read_sequence(video, split, name))
    return listing


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_order(csv_path: str, cells: list[str], line_no: int) -> tuple[int, ...] | None:
    """Where frame,x,y,w,h are in each row, from a header line; None when the line is not a header (it starts
    with a number: a row of data, columns in the default order)."""
    if cells and _is_number(cells[0]):
        return None
    names = [c.lower() for c in cells]
    if sorted(names) != sorted(COLUMNS):
        raise InvalidInputError(csv_path, f"header {','.join(cells)!r} does not name the columns "
                                          f"{','.join(COLUMNS)} (in any order)", line_no)
    return tuple(names.index(c) for c in COLUMNS)


def read_sequence(video: str, split: str, name: str) -> SequenceSource:
    csv_path = os.path.splitext(video)[0] + ".csv"
    if not os.path.isfile(csv_path):
        raise InvalidInputError(video, f"video has no box file {os.path.basename(csv_path)}")
    lines = read_text_lines(csv_path)
    order = tuple(range(len(COLUMNS)))  # frame,x,y,w,h unless a header says otherwise
    layout = ",".join(COLUMNS)
    entries: dict[int, tuple[np.ndarray | None, int]] = {}
    first_line = True
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        cells = [c.strip() for c in text.split(",")]
        if first_line:
            first_line = False
            cells[0] = cells[0].removeprefix("\ufeff")  # a byte-order mark, as spreadsheet exports write
            header = _column_order(csv_path, cells, line_no)
            if header is not None:
                order, layout = header, ",".join(cells)
                continue
        if len(cells) != len(COLUMNS):
            raise InvalidInputError(csv_path, f"expected {len(COLUMNS)} values {layout}, got {text.strip()!r}", line_no)
        frame_text, *box_cells = (cells[i] for i in order)
        try:
            frame = int(frame_text)
        except ValueError as exc:
            raise InvalidInputError(csv_path, f"frame number {frame_text!r} is not an integer", line_no) from exc
        if frame < 0:
            raise InvalidInputError(csv_path, f"frame number {frame} is negative", line_no)
        if frame in entries:
            raise InvalidInputError(csv_path, f"frame {frame} has a second box (first on line {entries[frame][1]})",
                                    line_no)
        box = None if all(c == "" for c in box_cells) else parse_box(csv_path, line_no, ",".join(box_cells))
        entries[frame] = (box, line_no)
    if not any(box is not None for box, _ in entries.values()):
        raise InvalidInputError(csv_path, "no boxes (empty sequence)")
    count = max(entries) + 1
    boxes = np.full((count, 4), np.nan)
    box_lines = np.zeros(count, dtype=np.int64)
    for frame, (box, line_no) in entries.items():
        box_lines[frame] = line_no
        if box is not None:
            boxes[frame] = box
    with np.errstate(invalid="ignore"):
        visible = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    stream = video_stream(video)
    check_boxes_in_frame(csv_path, boxes, visible, stream.width, stream.height, MARK_ABSENT,
                         line_of=lambda i: int(box_lines[i]))
    # a box file that labels some frames and leaves others out still labels the whole video
    return SequenceSource(DATASET, split, name, video, stream.fps, boxes, visible, True,
                          video_path=video, annotation_paths=[csv_path], box_lines=box_lines)


def fit_to_frame_count(source: SequenceSource, frame_count: int) -> SequenceSource:
    """Once the video is decoded: boxes past its end are an error; frames past the last box are absent."""
    if frame_count == 0:
        raise InvalidInputError(source.video_path, "video has no frames (empty sequence)")
    if source.num_frames > frame_count:
        frame = frame_count + int(np.argmax(source.box_lines[frame_count:] > 0))
        raise InvalidInputError(source.annotation_paths[0],
                                f"box for frame {frame} but the video has {frame_count} frames",
                                int(source.box_lines[frame]))
    extra = frame_count - source.num_frames
    source.boxes_xywh = np.concatenate([source.boxes_xywh, np.full((extra, 4), np.nan)])
    source.visible = np.concatenate([source.visible, np.zeros(extra, dtype=bool)])
    source.box_lines = np.concatenate([source.box_lines, np.zeros(extra, dtype=np.int64)])
    return source
