"""Frame sources the tracker reads: video files (decord), JPEG folders (PIL). Frames are HWC uint8 RGB."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from ..errors import BadInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


class FrameSource(Protocol):
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[np.ndarray]: ...


class ImageFolderFrames:
    """Frames as image files, in the order given (or sorted by name)."""

    def __init__(self, paths: list[str | Path]):
        if not paths:
            raise ValueError("no frames: the image list is empty")
        self.paths = [Path(p) for p in paths]

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ImageFolderFrames":
        folder = Path(folder)
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return cls(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        from PIL import Image

        first_size = None
        for index, path in enumerate(self.paths):
            try:
                with Image.open(path) as image:
                    frame = np.asarray(image.convert("RGB"))
            except OSError as exc:
                raise BadInputError(f"{path}: unreadable image (frame {index + 1} of {len(self.paths)}): {exc}; "
                                    f"replace or remove the file") from exc
            size = (frame.shape[1], frame.shape[0])
            first_size = first_size or size
            if size != first_size:
                raise BadInputError(f"{path}: frame {index + 1} is {size[0]}x{size[1]}, the first frame "
                                    f"{self.paths[0].name} is {first_size[0]}x{first_size[1]}: every frame of a "
                                    f"folder must have one size (resize the odd ones, or track them separately)")
            yield frame


class VideoFrames:
    """A video file (or a file-like object holding one) decoded with decord, in chunks."""

    def __init__(self, source, name: str | None = None, chunk: int = 16, start: int = 0):
        import decord

        self.name = name or str(source)
        try:
            self.reader = decord.VideoReader(source if not isinstance(source, Path) else str(source), num_threads=1)
        except Exception as exc:  # decord raises its own DECORDError for anything unreadable
            raise ValueError(f"{self.name}: not a readable video: {exc}") from exc
        self.chunk = chunk
        self.start = start  # first frame to yield (decord seeks to the nearest keyframe)

    def __len__(self) -> int:
        return len(self.reader) - self.start

    def __iter__(self) -> Iterator[np.ndarray]:
        for first in range(self.start, len(self.reader), self.chunk):
            batch = self.reader.get_batch(list(range(first, min(first + self.chunk, len(self.reader))))).asnumpy()
            yield from batch


def open_frames(path: str | Path) -> FrameSource:
    """A folder of images or a video file."""
    path = Path(path)
    if path.is_dir():
        return ImageFolderFrames.from_folder(path)
    if not path.exists():
        raise ValueError(f"{path}: no such video file or image folder")
    return VideoFrames(path)
