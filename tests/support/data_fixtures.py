"""Small FrameIndex fixtures for sampler and processing tests (no clips: sampling never opens one)."""
from __future__ import annotations

import numpy as np

from stark.platform.data.config import DataConfig
from stark.platform.data.frame_index import FrameIndex, build_frame_index
from stark.platform.ingest.manifest import ClipRecord
from stark.platform.data.sampling import CropGeometry

ST = CropGeometry(template_size=128, search_size=320, template_factor=2.0, search_factor=5.0, num_templates=2)
S = CropGeometry(template_size=128, search_size=320, template_factor=2.0, search_factor=5.0, num_templates=1)


def sequence_records(name: str, dataset: str, visible: np.ndarray, clip_frames: int = 50) -> list[ClipRecord]:
    """Manifest rows for a sequence of len(visible) frames (640x480, a 60x40 box drifting right)."""
    n = len(visible)
    boxes = np.stack([np.array([100.0 + i, 200.0, 60.0, 40.0]) if v else np.zeros(4) for i, v in enumerate(visible)])
    return [ClipRecord(name, dataset, "train", k, first, min(clip_frames, n - first), n, f"mem://{name}/{k}", 0, "",
                       640, 480, 30.0, boxes[first:first + clip_frames], visible[first:first + clip_frames], True,
                       name, "")
            for k, first in enumerate(range(0, n, clip_frames))]


def absent_stretch(n: int, start: int, stop: int) -> np.ndarray:
    visible = np.ones(n, dtype=bool)
    visible[start:stop] = False
    return visible


def three_sequence_index() -> FrameIndex:
    """got10k 'a' (300 frames, absent 100-139), 'b' (120, always visible), lasot 'c' (400, absent 250-299)."""
    records = (sequence_records("a", "got10k", absent_stretch(300, 100, 140))
               + sequence_records("b", "got10k", np.ones(120, dtype=bool))
               + sequence_records("c", "lasot", absent_stretch(400, 250, 300)))
    return build_frame_index(records, DataConfig(), num_templates=2)
