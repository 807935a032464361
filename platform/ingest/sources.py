"""What every importer produces: one validated `SequenceSource` per sequence, and the errors that name
the file and line of bad input.

Boxes are xywh in pixels, one row per frame. A row of NaN means "no box given" (test splits ship only
the first box; a user's CSV may leave frames out). `visible` says where the target can be trained on.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import BadInputError


class InvalidInputError(BadInputError):
    """Bad input, located: `path:line: message` (or `path: message` when no single line is to blame)."""

    def __init__(self, path: str, message: str, line: int | None = None):
        self.path, self.message, self.line = str(path), message, line
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")

    def __reduce__(self):  # survives pickling (Ray task results) with its fields
        return type(self), (self.path, self.message, self.line)


@dataclass
class SequenceSource:
    dataset: str  # got10k | lasot | trackingnet | footage
    split: str  # train | val | test
    name: str  # unique within (dataset, split)
    source_path: str  # the sequence folder, or the video file
    fps: float
    boxes_xywh: np.ndarray  # [N, 4] float64; NaN rows where no box is given
    visible: np.ndarray  # [N] bool
    has_groundtruth: bool  # False for test splits that ship only the first box
    frame_paths: list[str] = field(default_factory=list)  # image sequences: one file per frame
    video_path: str | None = None  # footage: the video file (frame count known only once decoded)
    annotation_paths: list[str] = field(default_factory=list)  # hashed with the frames
    box_lines: np.ndarray | None = None  # footage: the CSV line of each frame's box (0 = none)

    @property
    def num_frames(self) -> int:
        return len(self.boxes_xywh)

    @property
    def content_files(self) -> list[str]:
        """Every file whose bytes make up the sequence (what the content hash covers)."""
        return self.annotation_paths + (self.frame_paths or [self.video_path])


# --- reading annotation files ----------------------------------------------------------------------
_SEPARATORS = re.compile(r"[,\s]+")


def read_text_lines(path: str) -> list[str]:
    """The lines of a text file, trailing blank lines dropped. A missing file is an InvalidInputError."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError as exc:
        raise InvalidInputError(path, "file is missing") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(path, f"cannot read: {exc}") from exc
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def parse_box(path: str, line_no: int, text: str) -> np.ndarray:
    """'x,y,w,h' (commas, tabs or spaces) -> float array; NaN, infinities and negative sizes are errors."""
    parts = [p for p in _SEPARATORS.split(text.strip()) if p]
    if len(parts) != 4:
        raise InvalidInputError(path, f"expected 4 numbers x,y,w,h, got {text.strip()!r}", line_no)
    try:
        box = np.array([float(p) for p in parts])
    except ValueError as exc:
        raise InvalidInputError(path, f"not a number in {text.strip()!r}", line_no) from exc
    if not np.all(np.isfinite(box)):
        raise InvalidInputError(path, f"box {text.strip()!r} has NaN or infinite values", line_no)
    if box[2] < 0 or box[3] < 0:
        raise InvalidInputError(path, f"box {text.strip()!r} has a negative width or height", line_no)
    return box


def read_annotation_boxes(path: str) -> np.ndarray:
    """One x,y,w,h box per line -> [N, 4]."""
    lines = read_text_lines(path)
    if not lines:
        raise InvalidInputError(path, "no boxes (empty sequence)")
    return np.stack([parse_box(path, i + 1, line) for i, line in enumerate(lines)])


def _label_value(path: str, text: str, allowed: range, line: int, where: str = "") -> int:
    """One integer label; a fraction ("0.5") or a value outside `allowed` is an error, never rounded or clipped."""
    try:
        number = float(text)
    except ValueError as exc:
        raise InvalidInputError(path, f"{where}expected an integer label, got {text!r}", line) from exc
    if not number.is_integer():
        raise InvalidInputError(path, f"{where}expected an integer label, got {text!r}", line)
    value = int(number)
    if value not in allowed:
        raise InvalidInputError(path, f"{where}label {value} is out of range: {os.path.basename(path)} holds "
                                      f"{allowed.start}..{allowed.stop - 1}", line)
    return value


def read_label_lines(path: str, allowed: range) -> np.ndarray:
    """One integer per line (GOT-10k absence.label / cover.label), each within `allowed` -> [N] int."""
    return np.array([_label_value(path, line.strip(), allowed, i + 1) for i, line in enumerate(read_text_lines(path))],
                    dtype=np.int64)


def read_label_row(path: str, allowed: range) -> np.ndarray:
    """Comma-separated integers (LaSOT full_occlusion.txt / out_of_view.txt: one line), each within `allowed`
    -> [N] int. An error names the line and which value on it (the frame)."""
    values = []
    for line_no, line in enumerate(read_text_lines(path), start=1):
        for part in (p for p in _SEPARATORS.split(line.strip()) if p):
            values.append(_label_value(path, part, allowed, line_no, f"value {len(values) + 1} (frame {len(values)}): "))
    return np.array(values, dtype=np.int64)


def check_count(path: str, what: str, count: int, frames: int, frames_where: str) -> None:
    """Annotations must cover exactly the frames on disk; the error points at the first line too many/few."""
    if count != frames:
        line = frames + 1 if count > frames else count + 1
        raise InvalidInputError(path, f"{count} {what} but {frames} frames in {frames_where}", line)


def valid_boxes(boxes: np.ndarray) -> np.ndarray:
    """[N] bool: a box with positive width and height (the official datasets' `valid`)."""
    with np.errstate(invalid="ignore"):
        return (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def check_boxes_in_frame(path: str, boxes: np.ndarray, visible: np.ndarray, width: int, height: int,
                         how_to_mark_absent: str, line_of=lambda i: i + 1) -> None:
    """A frame counted as visible must have a box that overlaps the width x height image.

    A box wholly outside it is refused (naming the file and line), not quietly marked absent: the
    annotation says the target is in view and the box says it is not, and the usual causes (boxes for
    another resolution, normalised coordinates, columns in another order) make every box wrong, which
    marking the outside ones absent would hide. A frame whose target has left the view is marked
    absent in the layout's own way (`how_to_mark_absent`, said in the error).
    """
    x, y, w, h = np.asarray(boxes, dtype=np.float64).T
    with np.errstate(invalid="ignore"):
        outside = np.asarray(visible, dtype=bool) & ((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0))
    if not outside.any():
        return
    i = int(np.argmax(outside))
    more = int(outside.sum()) - 1
    box = ",".join(f"{v:g}" for v in boxes[i])
    raise InvalidInputError(path, f"box {box} of frame {i} lies entirely outside the {width}x{height} image"
                                  + (f" (and {more} more frames' boxes)" if more else "")
                                  + f"; if the target is out of view there, {how_to_mark_absent}", line_of(i))


def numbered_frames(folder: str, name_of, ext: str = ".jpg") -> list[str]:
    """The frame files of a folder, which must be numbered without gaps by `name_of(i)` (i from 0)."""
    try:
        files = [f for f in os.listdir(folder) if f.lower().endswith(ext)]
    except FileNotFoundError as exc:
        raise InvalidInputError(folder, "frame folder is missing") from exc
    if not files:
        raise InvalidInputError(folder, f"no {ext} frames (empty sequence)")
    paths = [os.path.join(folder, name_of(i)) for i in range(len(files))]
    present = set(files)
    for i, path in enumerate(paths):
        if os.path.basename(path) not in present:
            raise InvalidInputError(path, f"frame {i} is missing ({len(files)} {ext} files, numbered with a gap)")
    return paths


# --- reading frames ----------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """HWC uint8 RGB; an unreadable or truncated image is an InvalidInputError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated JPEG fails here, not later
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError as exc:
        raise InvalidInputError(path, "frame file is missing") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(path, f"unreadable or truncated image: {exc}") from exc


def image_size(path: str) -> tuple[int, int]:
    """(width, height) of an image, from its header (nothing is decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError as exc:
        raise InvalidInputError(path, "frame file is missing") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(path, f"unreadable or truncated image: {exc}") from exc


def iter_frames(source: SequenceSource) -> Iterator[np.ndarray]:
    """Every frame of a sequence in order, each HWC uint8 of one size; bad frames raise InvalidInputError."""
    if source.video_path is None:
        size = None
        for path in source.frame_paths:
            frame = read_image(path)
            if size is None:
                size = frame.shape
            elif frame.shape != size:
                raise InvalidInputError(path, f"frame is {frame.shape[1]}x{frame.shape[0]}, "
                                              f"the sequence's first frame is {size[1]}x{size[0]}")
            yield frame
        return
    import av

    try:
        with av.open(source.video_path) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise InvalidInputError(source.video_path, f"unreadable or truncated video: {exc}") from exc


@dataclass(frozen=True)
class VideoStream:
    fps: float
    width: int
    height: int


def video_stream(path: str) -> VideoStream:
    """The frame rate and frame size of a video file's first video stream (nothing is decoded)."""
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise InvalidInputError(path, "no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            width, height = stream.codec_context.width, stream.codec_context.height
            if not (width > 0 and height > 0):
                raise InvalidInputError(path, "the video stream does not say its frame size")
            return VideoStream(float(rate) if rate else 30.0, width, height)
    except av.error.FFmpegError as exc:
        raise InvalidInputError(path, f"unreadable video: {exc}") from exc


class FirstListed:
    """Where each sequence name was first listed. A sequence is listed once per data set (its name is its id in
    the manifest); a second entry is the error, named with both places. The first is imported, so with
    --skip-invalid the second is skipped and reported."""

    def __init__(self):
        self.first: dict[str, tuple[str, int | None]] = {}

    def check(self, name: str, path: str, line: int | None = None) -> None:
        if name in self.first:
            first_path, first_line = self.first[name]
            if first_line is None:
                where = first_path
            else:
                where = f"line {first_line}" if first_path == path else f"{first_path}:{first_line}"
            raise InvalidInputError(path, f"sequence {name!r} appears twice (first: {where})", line)
        self.first[name] = (path, line)


@dataclass
class SkippedSequence:
    """A sequence left out by --skip-invalid, with the error that excluded it."""

    dataset: str
    split: str
    name: str
    source_path: str
    error: InvalidInputError

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "split": self.split, "name": self.name,
                "source_path": self.source_path, "error": str(self.error)}


@dataclass
class Listing:
    """An importer's answer: the valid sequences, and the invalid ones with their errors."""

    sequences: list[SequenceSource] = field(default_factory=list)
    invalid: list[SkippedSequence] = field(default_factory=list)

    def add(self, dataset: str, split: str, name: str, source_path: str, read) -> None:
        """Run `read()` -> SequenceSource; an InvalidInputError files the sequence as invalid instead."""
        try:
            self.sequences.append(read())
        except InvalidInputError as exc:
            self.add_invalid(dataset, split, name, source_path, exc)

    def add_invalid(self, dataset: str, split: str, name: str, source_path: str, error: InvalidInputError) -> None:
        self.invalid.append(SkippedSequence(dataset, split, name, source_path, error))
