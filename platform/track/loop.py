"""The STARK-S / STARK-ST tracker loop, one sequence or many in one batched forward per step, around an
engine's two network calls; no PyTorch here, so ONNX Runtime can run it in a process without it.

Per frame: crop the search region at search_factor around the previous box (zero padding + mask),
run the network with the cached template tokens, map the normalised box back to the frame and clip
it to the frame (official margin rule). No cosine window, no smoothing. STARK-ST: on every
`update_interval`-th frame, if the score head's sigmoid exceeds `score_threshold`, the dynamic
template is re-cropped around the new box; the target counts as present where the sigmoid reaches
`present_threshold`. Template tokens are computed once per template. With `redetect_after` > 0 (not
the official tracker) a target scored below `redetect_threshold` that long is searched for over the
whole frame, from the last box scored above it (`redetection_boxes`). With `size_consistency` > 0 (not
the official tracker either) every score is first scaled down by how far the box's size is from that of
the box the newest template was cut around (`size_consistent`); with `aspect_consistency` > 0, by how far
its aspect ratio is from that box's (`aspect_consistent`).
How crops are cut and boxes mapped back is `crop_rule` (platform/crop.py): `official` is the
official tracker's rule, selected by loading an official release file.

Engines (subclasses of TrackerLoop) provide the network: StarkTracker (tracker.py, PyTorch) and
OnnxTracker (onnx_tracker.py, ONNX Runtime). Their template tokens are objects with `stack` (batch axis)
and `select` (one batch element), PyTorch's `Tokens` or ONNX Runtime's arrays.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ...model.config import ModelConfig
from ..crop import CROP_RULES, clip_box_xywh
from ..image_norm import normalize_crops
from .config import TrackerSettings


@dataclass
class TrackState:
    """One sequence being tracked."""

    box: np.ndarray  # xywh, frame pixels
    frame_index: int  # frames since the initial one
    templates: list[Any]  # [initial] or [initial, dynamic] tokens of the engine, each with a batch axis of 1
    updates: list[int] = field(default_factory=list)  # frame indices where the dynamic template changed
    held: np.ndarray | None = None  # the last box scored at or above redetect_threshold (re-detection's scale)
    missed: int = 0  # consecutive frames since, scored below it
    reference: np.ndarray | None = None  # the box the newest template was cut around (size/aspect consistency)

    def lost(self, settings: TrackerSettings) -> bool:
        """Whether the next frame is searched whole (re-detection) instead of around `box`."""
        return settings.redetect_after > 0 and self.missed >= settings.redetect_after


@dataclass
class TrackResult:
    boxes: np.ndarray  # [N, 4] xywh; row 0 is the given box
    # [N] the score decisions used (sigmoid, size- and aspect-consistent when on); NaN: none (frame 0, STARK-S)
    scores: np.ndarray
    seconds: np.ndarray  # [N] wall time spent on each frame
    updates: list[int]  # frame indices where the dynamic template was replaced
    initial_template: Any = None  # the initial template's tokens (batch axis 1), for reuse
    present: np.ndarray | None = None  # [N] bool: score >= present_threshold (`target_present`); set by track_many


@dataclass
class ResumePoint:
    """Continue a sequence whose frames 0..frame_index are already known (`prefix`), replacing the
    dynamic template at frame_index: the state STARK-ST is in right after an update there.
    The frames handed to the tracker then start at frame_index."""

    prefix: TrackResult  # at least frame_index + 1 rows, with initial_template set
    frame_index: int


def should_update(frame_index: int, score: float, settings: TrackerSettings) -> bool:
    """The STARK-ST rule: only on interval frames, and only above the threshold."""
    return frame_index % settings.update_interval == 0 and score > settings.score_threshold


def target_present(scores: np.ndarray, settings: TrackerSettings) -> np.ndarray:
    """[N] bool: whether the score says the target is in view, sigmoid(score) >= present_threshold.
    A frame without a score (frame 0, every frame of STARK-S) counts as present."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.isnan(scores) | (scores >= settings.present_threshold)


def redetection_boxes(box_xywh, height: int, width: int, search_factor: float, max_windows: int
                      ) -> list[np.ndarray]:
    """Boxes whose search windows (side search_factor * sqrt(w * h)) cover a height x width frame, each
    overlapping the next by at least half a window: every point lies in a window, and every point more
    than a quarter window from the frame's edge in the central half of one. Where that needs more than
    max_windows, the box grows by 1.25x steps (the target then fills less of each crop) until it does not."""
    _, _, w, h = (float(v) for v in box_xywh)
    grow = 1.0
    while True:
        side = search_factor * math.sqrt(w * h) * grow
        along = [1 if side >= n else math.ceil((n - side) / (side / 2)) + 1 for n in (width, height)]
        if along[0] * along[1] <= max_windows:
            break
        grow *= 1.25
    centres = [np.array([n / 2]) if k == 1 else np.linspace(side / 2, n - side / 2, k)
               for n, k in zip((width, height), along)]
    bw, bh = w * grow, h * grow
    return [np.array([cx - bw / 2, cy - bh / 2, bw, bh]) for cy in centres[1] for cx in centres[0]]


def box_size(box_xywh) -> float:
    """sqrt(w * h): a box's size, in its own units."""
    return math.sqrt(max(float(box_xywh[2]) * float(box_xywh[3]), 1e-12))


def box_aspect(box_xywh) -> float:
    """w / h: a box's aspect ratio."""
    return max(float(box_xywh[2]), 1e-6) / max(float(box_xywh[3]), 1e-6)


def _ratio_weight(values: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """exp(-strength * |log(value / reference)|): 1 at the reference, 2^-strength at twice or half of it."""
    ratio = np.log(np.clip(values, 1e-6, None) / np.clip(reference, 1e-6, None))
    return np.exp(-strength * np.abs(ratio))


def size_consistent(scores: np.ndarray, sizes: np.ndarray, reference: np.ndarray, strength: float) -> np.ndarray:
    """Scores of boxes of size `sizes` (sqrt(w * h)) times exp(-strength * |log(size / reference)|): a box
    far larger or smaller than the one the newest template shows is less likely to hold the target.
    The network scores each crop alone, so it cannot see that a box has grown frame by frame onto its
    surroundings (its crop grows with the box) or shrunk onto clutter. NaN scores stay NaN."""
    return scores * _ratio_weight(sizes, reference, strength)


def aspect_consistent(scores: np.ndarray, aspects: np.ndarray, reference: np.ndarray, strength: float
                      ) -> np.ndarray:
    """Scores of boxes of aspect ratio `aspects` (w / h) times exp(-strength * |log(aspect / reference)|):
    a box that half covers the target and half its surroundings is most often stretched along one side,
    which the network, scoring the crop alone, does not hold against it. NaN scores stay NaN."""
    return scores * _ratio_weight(aspects, reference, strength)


def recovery_state(boxes: np.ndarray, scores: np.ndarray, settings: TrackerSettings) -> tuple[np.ndarray, int]:
    """(held box, missed frames) after the given frames, as `TrackerLoop.step` leaves them: a frame whose
    score reaches redetect_threshold (or has none, frame 0) is where the held box was last set."""
    confident = ~(np.asarray(scores, dtype=np.float64) < settings.redetect_threshold)  # NaN counts as sure
    last = int(np.flatnonzero(confident)[-1]) if confident.any() else 0
    return np.asarray(boxes[last], dtype=np.float64).copy(), len(scores) - 1 - last


class TrackerLoop(ABC):
    """What every engine shares: crops, the update rule, states. A subclass sets `cfg` (ModelConfig) and
    `_settings`, and provides the network calls below."""

    cfg: ModelConfig
    _settings: TrackerSettings

    # --- the network: what an engine provides ---
    @abstractmethod
    def _forward_templates(self, images: np.ndarray, mask: np.ndarray):
        """Template crops [B, 3, Hz, Wz] float32 (normalised), masks [B, Hz, Wz] bool -> tokens with batch B."""

    @abstractmethod
    def _forward_search(self, templates: list, search: np.ndarray, search_mask: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Each template's tokens (batch B), search crops [B, 3, Hx, Wx], masks [B, Hx, Wx]
        -> (boxes [B, 4] cxcywh normalised to the search crop, scores [B]: sigmoid, NaN without a score head)."""

    def _adopt(self, tokens):
        """Template tokens kept from an earlier run (a ResumePoint's prefix), as this engine holds them."""
        return tokens

    # --- the loop ---
    @property
    def settings(self) -> TrackerSettings:
        return self._settings

    def with_settings(self, settings: TrackerSettings):
        """The same network (shared, not copied) tracking with other settings; this tracker is unchanged."""
        settings.validate()
        other = copy.copy(self)
        other._settings = settings
        return other

    def _embed(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list:
        """Template crops around each box -> one tokens object (batch 1) per frame, in one backbone pass."""
        crop = CROP_RULES[self.settings.crop_rule]
        crops, masks = zip(*(crop(f, b, self.cfg.template_factor, self.cfg.template_size)[:2]
                             for f, b in zip(frames, boxes)))
        tokens = self._forward_templates(normalize_crops(np.stack(crops)), np.stack(masks))
        return [tokens.select(i) for i in range(len(frames))]

    def start(self, frame: np.ndarray, box_xywh) -> TrackState:
        return self.start_many([frame], [box_xywh])[0]

    def start_many(self, frames: list[np.ndarray], boxes) -> list[TrackState]:
        boxes = [np.asarray(b, dtype=np.float64) for b in boxes]
        for frame, box in zip(frames, boxes):
            h, w = frame.shape[:2]
            if not (box[2] > 0 and box[3] > 0) or box[0] >= w or box[1] >= h or box[0] + box[2] <= 0 \
                    or box[1] + box[3] <= 0:
                raise ValueError(f"initial box {box.tolist()} is empty or outside the {w}x{h} frame")
        embedded = self._embed(frames, boxes)
        # STARK-ST starts with the dynamic template equal to the initial one.
        return [TrackState(box=b, frame_index=0, templates=[z] * self.cfg.num_templates, held=b.copy(),
                           reference=b.copy()) for b, z in zip(boxes, embedded)]

    def resume_many(self, frames: list[np.ndarray], points: list[ResumePoint]) -> list[TrackState]:
        """States right after a dynamic-template update on each given frame (frame `frame_index`)."""
        boxes = [p.prefix.boxes[p.frame_index].copy() for p in points]
        dynamic = self._embed(frames, boxes)
        states = []
        for b, p, z in zip(boxes, points, dynamic):
            n = p.frame_index + 1
            held, missed = recovery_state(p.prefix.boxes[:n], p.prefix.scores[:n], self.settings)
            states.append(TrackState(box=b, frame_index=p.frame_index,
                                     templates=[self._adopt(p.prefix.initial_template), z],
                                     updates=[u for u in p.prefix.updates if u < p.frame_index] + [p.frame_index],
                                     held=held, missed=missed, reference=b.copy()))
        return states

    def step(self, states: list[TrackState], frames: list[np.ndarray]) -> list[float]:
        """Track one new frame for each state, in one batched forward. Updates states; returns scores.
        A state that is lost (re-detection) contributes a grid of search crops and keeps the best-scored."""
        settings, c = self.settings, self.cfg
        crop = CROP_RULES[settings.crop_rule]
        lost = [s.lost(settings) for s in states]
        searched = [redetection_boxes(s.held, *f.shape[:2], c.search_factor, settings.redetect_windows)
                    if was_lost else [s.box] for s, f, was_lost in zip(states, frames, lost)]
        owners = [i for i, boxes in enumerate(searched) for _ in boxes]
        crops, masks, windows = zip(*(crop(frames[i], box, c.search_factor, c.search_size)
                                      for i, boxes in enumerate(searched) for box in boxes))
        templates = [type(states[0].templates[t]).stack([states[i].templates[t] for i in owners])
                     for t in range(c.num_templates)]
        boxes, scores = self._forward_search(templates, normalize_crops(np.stack(crops)), np.stack(masks))
        boxes = boxes * c.search_size  # cxcywh, crop pixels
        if settings.size_consistency > 0:
            sizes = np.sqrt(np.clip(boxes[:, 2] * boxes[:, 3], 1e-6, None)) / np.array([w.scale for w in windows])
            reference = np.array([box_size(states[i].reference) for i in owners])
            scores = size_consistent(scores, sizes, reference, settings.size_consistency)
        if settings.aspect_consistency > 0:
            aspects = np.clip(boxes[:, 2], 1e-6, None) / np.clip(boxes[:, 3], 1e-6, None)  # a crop's scale cancels
            reference = np.array([box_aspect(states[i].reference) for i in owners])
            scores = aspect_consistent(scores, aspects, reference, settings.aspect_consistency)

        due, chosen, first = [], [], 0
        for i, (state, frame) in enumerate(zip(states, frames)):
            n = len(searched[i])
            k = first + (int(np.argmax(scores[first:first + n])) if n > 1 else 0)  # the best-scored window
            first += n
            cx, cy, w, h = boxes[k]
            in_frame = windows[k].box_from_crop(np.array([cx - w / 2, cy - h / 2, w, h]))  # via the rule's origin
            found = clip_box_xywh(in_frame, frame.shape[0], frame.shape[1], self.settings.box_margin)
            score = float(scores[k])
            sure = not score < settings.redetect_threshold  # no score (STARK-S) counts as sure
            state.frame_index += 1
            chosen.append(score)
            # the box reported is the one scored; a lost state's next search still starts from `held`
            state.box = found
            state.held, state.missed = (found.copy(), 0) if sure else (state.held, state.missed + 1)
            if lost[i] and not sure:
                continue  # still lost: no template is cut around a box the network is not sure of
            if c.num_templates > 1 and should_update(state.frame_index, score, settings):
                due.append(i)
        if due:
            for i, tokens in zip(due, self._embed([frames[i] for i in due], [states[i].box for i in due])):
                states[i].templates = [states[i].templates[0], tokens]
                states[i].reference = states[i].box.copy()
                states[i].updates.append(states[i].frame_index)
        return chosen

    def track(self, frames: Iterable[np.ndarray], init_box_xywh) -> TrackResult:
        """One sequence, one frame at a time."""
        return next(iter(track_many(self, [(frames, init_box_xywh)], batch_size=1)))[1]


def track_many(tracker: TrackerLoop, sequences: Iterable[tuple[Iterable[np.ndarray], object]],
               batch_size: int, on_done: Callable[[int, TrackResult], None] | None = None
               ) -> Iterator[tuple[int, TrackResult]]:
    """Track many sequences with one batched forward per step over all active ones.

    Each item is (frames, start): start is the first frame's xywh box, or a ResumePoint (then the
    frames begin at its frame_index). Sequences join as slots free up and leave when their frames
    run out; yields (index, result) in the order sequences finish. Each sequence's boxes equal
    those of tracking it alone.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pending = iter(enumerate(sequences))
    active: list[dict] = []
    exhausted = False
    while active or not exhausted:
        joining = []
        while not exhausted and len(active) + len(joining) < batch_size:
            try:
                index, (frames, start) = next(pending)
            except StopIteration:
                exhausted = True
                break
            iterator = iter(frames)
            first = next(iterator, None)
            if first is None:
                raise ValueError(f"sequence {index} has no frames")
            joining.append({"index": index, "frames": iterator, "first": first, "start": start})
        if joining:
            _join(tracker, joining)
            active.extend(joining)
        if not active:
            break
        # next frame of every active sequence; finished ones leave
        stepping, frames = [], []
        for seq in list(active):
            frame = next(seq["frames"], None)
            if frame is None:
                active.remove(seq)
                state = seq["state"]
                scores = np.array(seq["scores"])
                result = TrackResult(np.array(seq["boxes"]), scores, np.array(seq["seconds"]),
                                     state.updates, state.templates[0], target_present(scores, tracker.settings))
                if on_done:
                    on_done(seq["index"], result)
                yield seq["index"], result
            else:
                stepping.append(seq)
                frames.append(frame)
        if not stepping:
            continue
        started = time.perf_counter()
        scores = tracker.step([s["state"] for s in stepping], frames)
        share = (time.perf_counter() - started) / len(stepping)
        for seq, score in zip(stepping, scores):
            seq["boxes"].append(seq["state"].box.copy())
            seq["scores"].append(score)
            seq["seconds"].append(share)


def _join(tracker: TrackerLoop, joining: list[dict]) -> None:
    """Initialise new sequences (one batched template pass for fresh starts, one for resumes)."""
    fresh = [j for j in joining if not isinstance(j["start"], ResumePoint)]
    resumed = [j for j in joining if isinstance(j["start"], ResumePoint)]
    if fresh:
        started = time.perf_counter()
        states = tracker.start_many([j["first"] for j in fresh], [j["start"] for j in fresh])
        share = (time.perf_counter() - started) / len(fresh)
        for j, state in zip(fresh, states):
            j.update(state=state, boxes=[state.box.copy()], scores=[math.nan], seconds=[share])
    if resumed:
        states = tracker.resume_many([j["first"] for j in resumed], [j["start"] for j in resumed])
        for j, state in zip(resumed, states):
            point: ResumePoint = j["start"]
            n = point.frame_index + 1
            j.update(state=state, boxes=list(point.prefix.boxes[:n]), scores=list(point.prefix.scores[:n]),
                     seconds=[0.0] * n)  # reused frames cost nothing here
    for j in joining:
        del j["first"]
