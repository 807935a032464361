"""Sample specs: which frames one training sample uses, where to crop them, and its augmentation draws.

Follows the official STARK `TrackingSampler` (lib/train/data/sampler.py):
- a dataset is drawn by the configured ratios, then a sequence uniformly among its usable ones;
- STARK-S ('causal'): a visible template frame, then a visible search frame within `max_gap` frames
  after it (the window widens by 5 until one is found);
- STARK-ST ('trident'): a visible initial template and a visible search frame anywhere in the sequence,
  and a dynamic template within `max_gap` of the search frame, on the initial template's side;
- stage 1: the search frame always contains the target (label 1);
- stage 2: a positive with probability `positive_ratio`, else a negative (label 0) of a kind drawn by
  `data.negative_mix`: "absent" (official): a frame of the same sequence where the target is absent,
  cropped around a fake centre box (W/8 x H/8), or, when the sequence has no such frame, a visible
  frame of another sequence cropped around that sequence's own object; "other_sequence": that second
  case always (another object where the template's should be: a look-alike); "drift": the search frame
  itself, cropped around a box displaced so far that the target lies wholly outside the crop (what the
  tracker sees after drifting onto background or a distractor); "occluded": a frame where the target is
  absent (covered or out of view) cropped around the target's box in the nearest earlier visible frame,
  jittered as a search box (what the tracker sees while the target is hidden: the crop stays where it
  was last seen), or a drift negative when the sequence has no such frame. Drift and occluded are not in
  the official sampler, whose negatives a score head can tell apart by their padding alone;
- search crops are centred on a jittered box: size x exp(N(0, 0.5)) per side, centre moved uniformly
  within +-0.5 * 4.5 * sqrt(w*h); templates are not jittered (official settings);
- augmentation: grayscale and horizontal flip joint (every crop of a sample, official transform_joint),
  brightness per crop;
- a sample whose crop would be all padding (at backbone-stride resolution) is drawn again, as the
  official processing's `valid` flag does.

Every draw comes from one generator seeded by (seed, epoch, sample_index), so a sample is the same
whichever actor makes it and in whatever order: the stream is reproducible per epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..crop import jitter_box_xywh
from .config import DataConfig
from .frame_index import FrameIndex

MAX_DRAWS = 100  # a sample that stays invalid this many times is a data problem, not bad luck


@dataclass(frozen=True)
class CropGeometry:
    """The crop sizes and factors of the model (template, search)."""

    template_size: int
    search_size: int
    template_factor: float
    search_factor: float
    num_templates: int  # 1 = STARK-S (causal sampler), 2 = STARK-ST (trident sampler)
    stride: int = 16  # crop pixels per backbone feature cell


@dataclass
class CropSpec:
    sequence: int  # FrameIndex sequence number
    frame: int  # frame number in the sequence
    crop_box_xywh: np.ndarray  # the (jittered) box the square crop is centred on, frame pixels
    target_box_xywh: np.ndarray  # the box expressed in crop coordinates (a fake box for negatives)
    flip: bool
    brightness: float


@dataclass
class SampleSpec:
    sample_index: int
    label: float  # 1 = the search crop contains the target
    templates: list[CropSpec]
    search: CropSpec
    grayscale: bool  # joint: every crop of the sample


def sample_visible(visible: np.ndarray, rng: np.random.Generator, lo: int = 0, hi: int | None = None,
                   want_visible: bool = True) -> int | None:
    """A frame in [lo, hi) whose visibility is `want_visible`, uniformly; None when there is none."""
    lo, hi = max(lo, 0), len(visible) if hi is None else min(hi, len(visible))
    if hi <= lo:
        return None
    ids = np.flatnonzero(visible[lo:hi] == want_visible)
    return None if len(ids) == 0 else lo + int(ids[rng.integers(len(ids))])


def causal_frames(visible: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[list[int], int]:
    """STARK-S: template, then search in (template, template + max_gap]."""
    gap_increase = 0
    while True:
        template = sample_visible(visible, rng, 0, len(visible) - 1)
        search = sample_visible(visible, rng, template + 1, template + max_gap + gap_increase)
        if search is not None:
            return [template], search
        gap_increase += 5


def trident_frames(visible: np.ndarray, max_gap: int, rng: np.random.Generator) -> tuple[list[int], int]:
    """STARK-ST: initial template and search anywhere; dynamic template within max_gap of the search."""
    while True:
        initial = sample_visible(visible, rng)
        search = sample_visible(visible, rng)
        if initial >= search:
            lo, hi = search, search + max_gap
        else:
            lo, hi = search - max_gap, search
        dynamic = sample_visible(visible, rng, lo, hi)
        if dynamic is not None:
            return [initial, dynamic], search


def last_visible_before(visible: np.ndarray, frame: int) -> int | None:
    """The nearest frame before `frame` where the target is visible (after it when none is before)."""
    before = np.flatnonzero(visible[:frame])
    if len(before):
        return int(before[-1])
    after = np.flatnonzero(visible[frame + 1:])
    return frame + 1 + int(after[0]) if len(after) else None


def center_box(width: int, height: int, ratio: float = 1 / 8) -> np.ndarray:
    """The official fake box for negatives: W/8 x H/8 at the frame centre (integer-truncated)."""
    cx, cy, w, h = width / 2, height / 2, width * ratio, height * ratio
    return np.array([int(cx - w / 2), int(cy - h / 2), int(w), int(h)], dtype=np.float64)


def crop_is_valid(box_xywh: np.ndarray, factor: float, out_size: int, width: int, height: int,
                  stride: int = 16) -> bool:
    """Official validity: crop side >= 1, and some real image inside the crop at backbone-cell scale."""
    w, h = box_xywh[2], box_xywh[3]
    if not (np.all(np.isfinite(box_xywh)) and w > 0 and h > 0):
        return False
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        return False
    x0 = round(box_xywh[0] + 0.5 * w - 0.5 * side)
    y0 = round(box_xywh[1] + 0.5 * h - 0.5 * side)
    cell = side * stride / out_size  # one backbone cell, in frame pixels
    overlap_x = min(x0 + side, width) - max(x0, 0)
    overlap_y = min(y0 + side, height) - max(y0, 0)
    return overlap_x >= min(cell, side) and overlap_y >= min(cell, side)


def make_sample_spec(index: FrameIndex, sample_index: int, cfg: DataConfig, geometry: CropGeometry,
                     stage: int, seed: int, epoch: int) -> SampleSpec:
    """The official per-sample sampler: dataset by ratio, sequence uniformly, frames anywhere in it."""
    rng = np.random.default_rng([seed, epoch, sample_index])
    for _ in range(MAX_DRAWS):
        seq = draw_sequence(index, rng)
        spec = draw_sample(index, sample_index, seq, 0, int(index.seq_num_frames[seq]), cfg, geometry, stage, rng,
                           lambda rng: _other_sequence_frame(index, seq, rng))
        if spec is not None:
            return spec
    raise RuntimeError(f"sample {sample_index}: no valid crop after {MAX_DRAWS} draws (boxes far outside frames?)")


def draw_sequence(index: FrameIndex, rng: np.random.Generator) -> int:
    """A dataset by the configured ratios, then one of its usable sequences uniformly (official order)."""
    d = int(rng.choice(len(index.dataset_names), p=index.dataset_probs))
    sequences = index.dataset_sequences[d]
    return int(sequences[rng.integers(len(sequences))])


OtherFrame = Callable[[np.random.Generator], "tuple[int, int]"]


def draw_sample(index: FrameIndex, sample_index: int, seq: int, lo: int, hi: int, cfg: DataConfig,
                geometry: CropGeometry, stage: int, rng: np.random.Generator, other_frame: OtherFrame
                ) -> SampleSpec | None:
    """One draw of the official sampler on frames [lo, hi) of sequence `seq` (the whole sequence for the
    per-sample sampler, a window for `windows.py`); `other_frame(rng)` gives the (sequence, frame) of
    another sequence's object for negatives. None when a crop is invalid (the caller draws again)."""
    visible = index.sequence_visible(seq)[lo:hi]
    sampler = causal_frames if geometry.num_templates == 1 else trident_frames
    template_frames, search_frame = sampler(visible, cfg.max_gap, rng)
    template_frames, search_frame = [lo + f for f in template_frames], lo + search_frame

    label = 1.0
    search_seq, search_box = seq, index.box(seq, search_frame)
    drift_box = None
    if stage == 2 and rng.random() >= cfg.positive_ratio:
        label = 0.0
        kinds = [k for k, w in cfg.negative_mix.items() if w > 0]
        weights = np.array([cfg.negative_mix[k] for k in kinds], dtype=np.float64)
        # one kind draws nothing: the official sampler's random stream stays as it was
        kind = kinds[0] if len(kinds) == 1 else kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        absent = sample_visible(visible, rng, want_visible=False) if kind in ("absent", "occluded") else None
        if kind == "occluded":
            last_seen = last_visible_before(visible, absent) if absent is not None else None
            if last_seen is None:
                kind, absent = "drift", None
            else:
                search_frame, search_box = lo + absent, index.box(seq, lo + last_seen)  # window -> sequence frames
                absent = None
        if kind == "drift":
            drift_box = drifted_box(search_box, geometry.search_factor, geometry.search_size, cfg.search_scale_jitter,
                                    int(index.seq_width[seq]), int(index.seq_height[seq]), rng, stride=geometry.stride)
            kind = "drift" if drift_box is not None else "other_sequence"
        if absent is not None:
            search_frame = lo + absent
            search_box = center_box(int(index.seq_width[seq]), int(index.seq_height[seq]))
        elif kind not in ("drift", "occluded"):
            search_seq, search_frame = other_frame(rng)
            search_box = index.box(search_seq, search_frame)

    grayscale = bool(rng.random() < cfg.grayscale_prob)
    # joint, as the official transform_joint's RandomHorizontalFlip: mirroring the template but not the
    # search crop would ask the network to match an object to its mirror image
    flip = bool(rng.random() < cfg.flip_prob)
    templates = []
    for frame in template_frames:
        box = index.box(seq, frame)
        crop_box = jitter_box_xywh(box, cfg.template_scale_jitter, cfg.template_center_jitter, rng)
        if not crop_is_valid(crop_box, geometry.template_factor, geometry.template_size,
                             int(index.seq_width[seq]), int(index.seq_height[seq]), geometry.stride):
            return None
        templates.append(CropSpec(seq, frame, crop_box, box, flip, _brightness(cfg, rng)))
    if drift_box is not None:
        crop_box = drift_box
    else:
        crop_box = jitter_box_xywh(search_box, cfg.search_scale_jitter, cfg.search_center_jitter, rng)
    if not crop_is_valid(crop_box, geometry.search_factor, geometry.search_size,
                         int(index.seq_width[search_seq]), int(index.seq_height[search_seq]), geometry.stride):
        return None
    search = CropSpec(search_seq, search_frame, crop_box, search_box, flip, _brightness(cfg, rng))
    return SampleSpec(sample_index, label, templates, search, grayscale)


def drifted_box(target_xywh: np.ndarray, factor: float, out_size: int, scale_sigma: float, width: int,
                height: int, rng: np.random.Generator, tries: int = 8, stride: int = 16) -> np.ndarray | None:
    """A box to crop around whose crop (side factor * sqrt(w*h)) holds none of the target and some of the
    frame: the target's size jittered as a search box is, moved 1.05-1.6x the distance at which the
    target leaves the crop along a random direction. None when no direction of `tries` fits the frame."""
    x, y, w, h = (float(v) for v in target_xywh)
    for _ in range(tries):
        size = np.array([w, h]) * np.exp(rng.standard_normal(2) * scale_sigma)
        side = math.sqrt(size[0] * size[1]) * factor
        angle = rng.uniform(0, 2 * math.pi)
        direction = np.array([math.cos(angle), math.sin(angle)])
        # along its dominant axis the crop's edge must clear the target's far edge
        clear = side / 2 + max(w, h) / 2 + 1
        centre = np.array([x + w / 2, y + h / 2]) + direction * clear * rng.uniform(1.05, 1.6) / np.abs(direction).max()
        box = np.array([centre[0] - size[0] / 2, centre[1] - size[1] / 2, size[0], size[1]])
        if crop_is_valid(box, factor, out_size, width, height, stride):
            return box
    return None


def _brightness(cfg: DataConfig, rng: np.random.Generator) -> float:
    """Per crop, as the official ToTensorAndJitter (drawn for each image)."""
    return float(rng.uniform(max(0.0, 1.0 - cfg.brightness_jitter), 1.0 + cfg.brightness_jitter))


def _other_sequence_frame(index: FrameIndex, seq: int, rng: np.random.Generator) -> tuple[int, int]:
    """A visible frame of a different sequence (dataset drawn by ratio, as the official get_one_search)."""
    for _ in range(MAX_DRAWS):
        d = int(rng.choice(len(index.dataset_names), p=index.dataset_probs))
        other = int(index.dataset_sequences[d][rng.integers(len(index.dataset_sequences[d]))])
        if other != seq:
            return other, sample_visible(index.sequence_visible(other), rng)
    raise ValueError("stage 2 negatives need a frame where the target is absent or a second sequence; "
                     "the manifests have one sequence with the target always visible")
