"""Everything the sampler needs to know about the training sequences, in flat numpy arrays.

Built once per stream from the manifests, put in the Ray object store once, and read zero-copy by every
decode worker: per-frame boxes and visibility, where each sequence's frames start, and which clip holds
which frame. No pixels: memory grows with frame count (about 17 bytes a frame), never with image size.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ..ingest.manifest import ClipRecord, manifest_uri, read_records
from ..storage import StorageConfig
from .config import DataConfig


@dataclass
class FrameIndex:
    dataset_names: list[str]
    dataset_probs: np.ndarray  # [D] float64, sums to 1
    dataset_sequences: list[np.ndarray]  # per dataset: the sequence numbers the sampler may draw
    sequence_names: list[str]  # [S] "dataset/split/sequence_id"
    seq_frame_start: np.ndarray  # [S] int64: offset of frame 0 in `boxes` / `visible`
    seq_num_frames: np.ndarray  # [S] int64
    seq_width: np.ndarray  # [S] int32
    seq_height: np.ndarray  # [S] int32
    seq_clip_start: np.ndarray  # [S] int64: first row of the sequence in the clip arrays
    seq_num_clips: np.ndarray  # [S] int64
    clip_uri: list[str]  # [C]
    clip_first_frame: np.ndarray  # [C] int64, frame number in its sequence
    boxes: np.ndarray  # [F, 4] float32 xywh pixels
    visible: np.ndarray  # [F] bool

    @property
    def num_sequences(self) -> int:
        return len(self.sequence_names)

    def sequence_visible(self, seq: int) -> np.ndarray:
        start = self.seq_frame_start[seq]
        return self.visible[start:start + self.seq_num_frames[seq]]

    def box(self, seq: int, frame: int) -> np.ndarray:
        return self.boxes[self.seq_frame_start[seq] + frame].astype(np.float64)

    def clip_of(self, seq: int, frame: int) -> tuple[str, int]:
        """(clip URI, frame number inside that clip) for a frame of a sequence."""
        start, count = self.seq_clip_start[seq], self.seq_num_clips[seq]
        firsts = self.clip_first_frame[start:start + count]
        k = int(np.searchsorted(firsts, frame, side="right")) - 1
        return self.clip_uri[start + k], int(frame - firsts[k])


def build_frame_index(records: list[ClipRecord], cfg: DataConfig, num_templates: int,
                      where: str = "the manifests") -> FrameIndex:
    """Sequences of the configured splits, with ground truth and enough visible frames (the official
    sampler's rule: more than 2 x (templates + 1) visible frames, and at least min_sequence_frames)."""
    grouped: dict[tuple[str, str, str], list[ClipRecord]] = defaultdict(list)
    for record in records:
        if record.split in cfg.splits and record.has_groundtruth:
            grouped[(record.dataset, record.split, record.sequence_id)].append(record)
    present = sorted({key[0] for key in grouped})
    if not present:
        raise ValueError(f"{where}: no sequences with ground truth in splits {cfg.splits}")
    ratios = _dataset_ratios(cfg, present, where)

    names, frame_start, num_frames, widths, heights, clip_start, num_clips = [], [], [], [], [], [], []
    clip_uri, clip_first, boxes, visible = [], [], [], []
    per_dataset: dict[str, list[int]] = defaultdict(list)
    frames_so_far = 0
    for (dataset, split, sequence_id), clips in sorted(grouped.items()):
        clips.sort(key=lambda r: r.clip_index)
        seq_visible = np.concatenate([c.visible for c in clips])
        seq = len(names)
        names.append(f"{dataset}/{split}/{sequence_id}")
        frame_start.append(frames_so_far)
        num_frames.append(len(seq_visible))
        widths.append(clips[0].width)
        heights.append(clips[0].height)
        clip_start.append(len(clip_uri))
        num_clips.append(len(clips))
        clip_uri += [c.clip_uri for c in clips]
        clip_first += [c.first_frame for c in clips]
        boxes.append(np.concatenate([c.boxes_xywh for c in clips]).astype(np.float32))
        visible.append(seq_visible)
        frames_so_far += len(seq_visible)
        if (ratios[dataset] > 0 and len(seq_visible) >= cfg.min_sequence_frames
                and seq_visible.sum() > 2 * (num_templates + 1)):
            per_dataset[dataset].append(seq)

    usable = [d for d in present if per_dataset[d]]
    if not usable:
        raise ValueError(f"{where}: no sequence has >= {cfg.min_sequence_frames} frames and more than "
                         f"{2 * (num_templates + 1)} visible ones")
    weights = np.array([ratios[d] for d in usable], dtype=np.float64)
    return FrameIndex(
        dataset_names=usable, dataset_probs=weights / weights.sum(),
        dataset_sequences=[np.array(per_dataset[d], dtype=np.int64) for d in usable],
        sequence_names=names, seq_frame_start=np.array(frame_start, dtype=np.int64),
        seq_num_frames=np.array(num_frames, dtype=np.int64), seq_width=np.array(widths, dtype=np.int32),
        seq_height=np.array(heights, dtype=np.int32), seq_clip_start=np.array(clip_start, dtype=np.int64),
        seq_num_clips=np.array(num_clips, dtype=np.int64), clip_uri=clip_uri,
        clip_first_frame=np.array(clip_first, dtype=np.int64),
        boxes=np.concatenate(boxes), visible=np.concatenate(visible))


def _dataset_ratios(cfg: DataConfig, present: list[str], where: str) -> dict[str, float]:
    if not cfg.dataset_ratios:
        return {d: 1.0 for d in present}
    missing = [d for d in present if d not in cfg.dataset_ratios]
    if missing:
        raise ValueError(f"data.dataset_ratios has no entry for {missing[0]!r}, which {where} contain "
                         f"(give it a ratio, 0 to leave it out)")
    return {d: float(cfg.dataset_ratios[d]) for d in present}


def load_frame_index(manifest_uris: list[str], cfg: DataConfig, num_templates: int,
                     storage: StorageConfig | None = None) -> FrameIndex:
    if not manifest_uris:
        raise ValueError("no manifests given (data.manifests): run `stark ingest` first")
    records = [r for uri in manifest_uris for r in read_records(manifest_uri(uri), storage)]
    return build_frame_index(records, cfg, num_templates, where=", ".join(manifest_uris))
