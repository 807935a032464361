"""Benchmark metrics as the tracking community computes them: GOT-10k AO/SR and OPE success/precision.

Two protocols, each checked against its reference toolkit:

- ``"got10k"``: got-10k/toolkit, ``got10k/experiments/got10k.py`` (``report``, ``_evaluate``) and
  ``got10k/utils/metrics.py`` (``rect_iou``). AO is the mean IoU, SR0.5 / SR0.75 the fraction of
  frames with IoU > 0.5 / > 0.75, over frames 1..N-1 (frame 0 is the initialisation and is skipped)
  where the target is visible (GOT-10k's ``cover > 0``); absent frames are skipped, never failures.
  Over a split, frames are pooled (the toolkit concatenates every sequence's IoUs), so a long
  sequence weighs more than a short one.
- ``"ope"`` (one-pass evaluation; LaSOT, TrackingNet, OTB): pytracking,
  ``pytracking/analysis/extract_results.py`` (``calc_seq_err_robust``, ``extract_results``) and
  ``plot_results.py`` (``get_auc_curve``, ``get_prec_curve``). The prediction in frame 0 is
  replaced by the ground truth and frame 0 is counted. Frames where the target is absent count as
  failures (IoU below every threshold, infinite centre error) and stay in the denominator -
  pytracking's LaSOT branch; with ``absent_as_failure=False`` they are dropped from numerator and
  denominator instead - pytracking's branch for TrackingNet/OTB. Over a split, every sequence
  weighs the same (per-sequence curves are averaged).

Shared conventions:

- Scores are fractions in [0, 1]; pytracking and the papers print them x100.
- Success curve: fraction of frames with IoU **strictly greater** than each threshold in
  ``OVERLAP_THRESHOLDS`` = 0, 0.05, ..., 1 (21 values). AUC is the **mean of those 21 values**
  (pytracking's ``auc_curve.mean(-1)``; OTB/LaSOT toolkits do the same). Since no IoU exceeds 1,
  the last point is always 0 and a perfect tracker scores AUC = 20/21 = 0.952, not 1.
- Precision curve: fraction of frames with centre error **less than or equal to** each threshold
  in ``CENTER_THRESHOLDS_PX`` = 0..50 px; "precision" is the value at 20 px. Normalised precision
  divides the x and y centre offsets by the ground-truth width and height, thresholds
  ``NORM_CENTER_THRESHOLDS`` = 0, 0.01, ..., 0.5; the reported value is at 0.2.
- IoU uses continuous boxes [x, x + w) x [y, y + h); the toolkits' "+1 pixel" corner arithmetic
  cancels out and gives the same number. Centres are (x + w/2, y + h/2); the toolkits' ``-1``
  offsets cancel in the difference of two centres.
- A predicted box with non-positive width or height is a miss: IoU 0 and infinite centre error
  (what the GOT-10k toolkit's IoU gives; pytracking instead repeats the previous frame's box for
  zero sizes and refuses negative ones). Non-finite predictions raise ``ValueError``.
- A frame whose ground-truth box is non-finite or has non-positive size is treated as an absent
  frame (pytracking's ``valid`` mask; GOT-10k annotates every visible frame with a real box).
- Boxes outside the image: under ``"got10k"``, when ``image_size`` is given, both boxes are clipped
  the way the toolkit's ``rect_iou(..., bound=resolution)`` does - x and y are clamped into
  [0, W] x [0, H], then w and h into [0, W - x] x [0, H - y]. A box reaching past the left or top
  edge is therefore moved inside, not cut (x=-10, w=30 becomes x=0, w=30); we keep that so the
  numbers match the toolkit and server. Under ``"ope"`` nothing is clipped (pytracking, OTB and
  LaSOT toolkits do not clip): a box outside the image simply overlaps the target less.
- Speed (optional): frames-per-second as the GOT-10k toolkit reports it, the mean of 1/t over
  frames with a positive, finite time t (all frames, including the initialisation).
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Protocol = Literal["got10k", "ope"]
PROTOCOLS: tuple[str, ...] = ("got10k", "ope")

OVERLAP_THRESHOLDS = np.arange(21, dtype=np.float64) / 20.0  # 0:0.05:1, exact multiples of 1/20
CENTER_THRESHOLDS_PX = np.arange(51, dtype=np.float64)  # 0..50 px
NORM_CENTER_THRESHOLDS = np.arange(51, dtype=np.float64) / 100.0  # 0:0.01:0.5
PRECISION_INDEX = 20  # 20 px on CENTER_THRESHOLDS_PX, 0.2 on NORM_CENTER_THRESHOLDS
_SR50_INDEX, _SR75_INDEX = 10, 15  # 0.5 and 0.75 on OVERLAP_THRESHOLDS

# How each benchmark is scored: sequence_metrics(..., **BENCHMARK_PROTOCOLS[name]).
BENCHMARK_PROTOCOLS: dict[str, dict] = {
    "got10k": {"protocol": "got10k", "absent_as_failure": False},
    "lasot": {"protocol": "ope", "absent_as_failure": True},  # pytracking's lasot branch
    "trackingnet": {"protocol": "ope", "absent_as_failure": False},  # pytracking's default branch
}


# --- per-frame errors -----------------------------------------------------------------------------
def box_iou_xywh(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of paired xywh boxes [N, 4] x [N, 4] -> [N]; 0 where either box has non-positive size."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    inter_w = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    inter_h = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(inter_w, 0.0, None) * np.clip(inter_h, 0.0, None)
    proper = (a[:, 2] > 0) & (a[:, 3] > 0) & (b[:, 2] > 0) & (b[:, 3] > 0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    iou = np.zeros(len(a))
    iou[proper] = inter[proper] / union[proper]
    return np.clip(iou, 0.0, 1.0)


def center_error_xywh(pred_xywh: np.ndarray, gt_xywh: np.ndarray, *, normalized: bool = False) -> np.ndarray:
    """Distance between box centres [N]; in pixels, or with x/y offsets divided by the gt width/height."""
    pred = np.asarray(pred_xywh, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt_xywh, dtype=np.float64).reshape(-1, 4)
    offset = (pred[:, :2] + 0.5 * pred[:, 2:]) - (gt[:, :2] + 0.5 * gt[:, 2:])  # [N, 2]
    if normalized:
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = offset / gt[:, 2:]
    return np.sqrt((offset ** 2).sum(axis=1))


def clip_boxes_to_image_got10k(boxes_xywh: np.ndarray, image_size: tuple[float, float]) -> np.ndarray:
    """The GOT-10k toolkit's bound: x, y clamped into the image, then w, h into what is left of it.
    A box crossing the left/top edge is moved in, not cut (see the module docstring)."""
    width, height = (float(v) for v in image_size)
    boxes = np.array(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    boxes[:, 0] = np.clip(boxes[:, 0], 0.0, width)
    boxes[:, 1] = np.clip(boxes[:, 1], 0.0, height)
    boxes[:, 2] = np.clip(boxes[:, 2], 0.0, width - boxes[:, 0])
    boxes[:, 3] = np.clip(boxes[:, 3], 0.0, height - boxes[:, 1])
    return boxes


# --- one sequence ---------------------------------------------------------------------------------
@dataclass(eq=False)
class SequenceMetrics:
    """Scores of one tracker on one sequence, plus what an aggregate over sequences needs.

    Per-frame arrays are [N] over all frames of the sequence: NaN where a frame is not evaluated,
    0 IoU / infinite errors where an evaluated frame is a failure (target absent, counted).
    """

    protocol: str
    num_frames: int
    num_evaluated: int  # frames in the denominator of every curve
    iou: np.ndarray  # [N]
    center_error_px: np.ndarray  # [N]
    norm_center_error: np.ndarray  # [N], offsets in units of the gt width/height
    success_curve: np.ndarray  # [21] over OVERLAP_THRESHOLDS
    precision_curve: np.ndarray  # [51] over CENTER_THRESHOLDS_PX
    norm_precision_curve: np.ndarray  # [51] over NORM_CENTER_THRESHOLDS
    mean_iou: float  # mean IoU over evaluated frames (GOT-10k's AO)
    fps: float | None = None  # GOT-10k definition, when times were given
    num_timed: int = 0  # frames with a usable time

    def scores(self) -> dict[str, float]:
        """Headline scores, fractions in [0, 1]; NaN when no frame was evaluated."""
        return _scores(self.protocol, self.mean_iou, self.success_curve, self.precision_curve,
                       self.norm_precision_curve, self.fps)


def sequence_metrics(pred_xywh, gt_xywh, visible=None, *, protocol: Protocol,
                     absent_as_failure: bool | None = None, image_size: tuple[float, float] | None = None,
                     times_s=None) -> SequenceMetrics:
    """Score one sequence.

    pred_xywh, gt_xywh: [N, 4] boxes in pixels (frame 0 of pred is the initial box).
    visible: [N] bool, True where the target is in view (None: everywhere it has a valid gt box).
    protocol: "got10k" or "ope" (see the module docstring for every convention).
    absent_as_failure: count absent frames as failures (True) or skip them (False). Default per
        protocol: False for "got10k" (the toolkit skips them), True for "ope" (pytracking on LaSOT).
    image_size: (width, height), "got10k" only: clip boxes to the image as the toolkit does.
    times_s: [N] seconds per frame, optional; gives `fps`.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    pred = np.array(pred_xywh, dtype=np.float64)
    gt = np.array(gt_xywh, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] != 4 or gt.shape != pred.shape:
        raise ValueError(f"pred and gt must both be [N, 4]; got {pred.shape} and {gt.shape}")
    num_frames = len(gt)
    if num_frames == 0:
        raise ValueError("empty sequence")
    if not np.isfinite(pred).all():
        bad = np.flatnonzero(~np.isfinite(pred).all(axis=1))
        raise ValueError(f"non-finite predicted boxes in frames {bad[:10].tolist()}")
    if visible is None:
        visible = np.ones(num_frames, dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != (num_frames,):
        raise ValueError(f"visible must be [{num_frames}], got {visible.shape}")
    if image_size is not None and protocol != "got10k":
        raise ValueError("image_size is a GOT-10k convention; OPE toolkits do not clip boxes to the image")
    if absent_as_failure is None:
        absent_as_failure = protocol == "ope"

    valid = visible & np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    counted = np.ones(num_frames, dtype=bool)
    if protocol == "got10k":
        counted[0] = False  # the initialisation frame is never scored
    else:
        pred[0] = gt[0]  # OPE: frame 0 is the given box, scored as such
    if not absent_as_failure:
        counted &= valid

    if image_size is not None:
        pred = clip_boxes_to_image_got10k(pred, image_size)
        gt = clip_boxes_to_image_got10k(gt, image_size)

    with np.errstate(invalid="ignore"):
        iou = box_iou_xywh(pred, gt)
        center = center_error_xywh(pred, gt)
        norm_center = center_error_xywh(pred, gt, normalized=True)
    miss = ~((pred[:, 2] > 0) & (pred[:, 3] > 0)) | ~valid
    iou[miss] = 0.0
    center[miss] = np.inf
    norm_center[miss] = np.inf
    iou[~counted] = np.nan
    center[~counted] = np.nan
    norm_center[~counted] = np.nan

    n = int(counted.sum())
    if n > 0:
        success = (iou[counted, None] > OVERLAP_THRESHOLDS[None, :]).mean(axis=0)  # [21]
        precision = (center[counted, None] <= CENTER_THRESHOLDS_PX[None, :]).mean(axis=0)  # [51]
        norm_precision = (norm_center[counted, None] <= NORM_CENTER_THRESHOLDS[None, :]).mean(axis=0)  # [51]
        mean_iou = float(iou[counted].mean())
    else:
        success = np.full(len(OVERLAP_THRESHOLDS), np.nan)
        precision = np.full(len(CENTER_THRESHOLDS_PX), np.nan)
        norm_precision = np.full(len(NORM_CENTER_THRESHOLDS), np.nan)
        mean_iou = float("nan")

    fps, num_timed = None, 0
    if times_s is not None:
        times = np.asarray(times_s, dtype=np.float64).reshape(-1)
        times = times[np.isfinite(times) & (times > 0)]
        num_timed = len(times)
        fps = float(np.mean(1.0 / times)) if num_timed else float("nan")

    return SequenceMetrics(protocol=protocol, num_frames=num_frames, num_evaluated=n, iou=iou,
                           center_error_px=center, norm_center_error=norm_center, success_curve=success,
                           precision_curve=precision, norm_precision_curve=norm_precision,
                           mean_iou=mean_iou, fps=fps, num_timed=num_timed)


# --- a split --------------------------------------------------------------------------------------
@dataclass(eq=False)
class BenchmarkMetrics:
    """One tracker over a split: flat scores for MLflow, curves for plots, and the two tables."""

    protocol: str
    num_sequences: int
    scores: dict[str, float]  # {name: fraction}, e.g. {"ao": .., "sr50": .., "sr75": ..}
    success_curve: np.ndarray  # [21] over OVERLAP_THRESHOLDS
    precision_curve: np.ndarray  # [51] over CENTER_THRESHOLDS_PX
    norm_precision_curve: np.ndarray  # [51] over NORM_CENTER_THRESHOLDS
    per_sequence: list[dict]  # rows: sequence, num_frames, num_evaluated, <scores>
    per_attribute: list[dict]  # rows: attribute, num_sequences, <scores>; empty without attributes


def aggregate(per_sequence: Mapping[str, SequenceMetrics],
              attributes: Mapping[str, Collection[str]] | None = None) -> BenchmarkMetrics:
    """Combine sequences into split scores and tables.

    per_sequence: {sequence name: SequenceMetrics}, all scored with the same protocol.
    attributes: {sequence name: names of the attributes it has} (e.g. LaSOT's "Illumination
        Variation"); each attribute gets a row scored over its sequences only.
    "got10k" pools frames (weights = evaluated frames); "ope" averages sequences equally and
    leaves out sequences with no evaluated frame (their row shows NaN).
    """
    if not per_sequence:
        raise ValueError("no sequences to aggregate")
    protocols = {m.protocol for m in per_sequence.values()}
    if len(protocols) != 1:
        raise ValueError(f"sequences were scored with different protocols: {sorted(protocols)}")
    protocol = protocols.pop()
    unknown = sorted(set(attributes or {}) - set(per_sequence))
    if unknown:
        raise ValueError(f"attributes name sequences that were not scored: {unknown[:10]}")

    rows = [{"sequence": name, "num_frames": m.num_frames, "num_evaluated": m.num_evaluated, **m.scores()}
            for name, m in per_sequence.items()]
    overall = _combine(protocol, list(per_sequence.values()))

    attribute_rows = []
    if attributes:
        by_attribute: dict[str, list[SequenceMetrics]] = {}
        for name, tags in attributes.items():
            for tag in tags:
                by_attribute.setdefault(str(tag), []).append(per_sequence[name])
        for tag in sorted(by_attribute):
            members = by_attribute[tag]
            attribute_rows.append({"attribute": tag, "num_sequences": len(members),
                                   **_combine(protocol, members)[0]})

    scores, success, precision, norm_precision = overall
    return BenchmarkMetrics(protocol=protocol, num_sequences=len(per_sequence), scores=scores,
                            success_curve=success, precision_curve=precision,
                            norm_precision_curve=norm_precision, per_sequence=rows,
                            per_attribute=attribute_rows)


def _combine(protocol: str, members: list[SequenceMetrics]):
    """Weighted mean of per-sequence curves: frames pooled for GOT-10k, sequences equal for OPE."""
    if protocol == "got10k":
        weights = np.array([m.num_evaluated for m in members], dtype=np.float64)
    else:
        weights = np.array([1.0 if m.num_evaluated > 0 else 0.0 for m in members])

    def mean(values: list) -> np.ndarray:
        if weights.sum() == 0:
            return np.full(np.shape(values[0]), np.nan)
        stacked = np.stack([np.nan_to_num(np.asarray(v, dtype=np.float64)) for v in values])  # [S, ...]
        return np.tensordot(weights, stacked, axes=1) / weights.sum()

    success = mean([m.success_curve for m in members])
    precision = mean([m.precision_curve for m in members])
    norm_precision = mean([m.norm_precision_curve for m in members])
    mean_iou = float(mean([m.mean_iou for m in members]))

    fps = None
    timed = [m for m in members if m.fps is not None]
    if timed:  # GOT-10k pools 1/t over all timed frames
        total = sum(m.num_timed for m in timed)
        fps = sum(m.fps * m.num_timed for m in timed if m.num_timed) / total if total else float("nan")

    return _scores(protocol, mean_iou, success, precision, norm_precision, fps), success, precision, norm_precision


def _scores(protocol: str, mean_iou: float, success: np.ndarray, precision: np.ndarray,
            norm_precision: np.ndarray, fps: float | None) -> dict[str, float]:
    if protocol == "got10k":
        scores = {"ao": float(mean_iou), "sr50": float(success[_SR50_INDEX]), "sr75": float(success[_SR75_INDEX])}
    else:
        scores = {"auc": float(np.mean(success)), "precision": float(precision[PRECISION_INDEX]),
                  "norm_precision": float(norm_precision[PRECISION_INDEX]),
                  "op50": float(success[_SR50_INDEX]), "op75": float(success[_SR75_INDEX])}
    if fps is not None:
        scores["fps"] = float(fps)
    return scores


# --- how well a confidence separates good frames from bad -------------------------------------------
def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of `scores` [N] for binary `labels` [N]: the probability that a random
    positive scores above a random negative, ties counted half (the Mann-Whitney U statistic over
    n_pos * n_neg, from average ranks). NaN when only one class is present (the area is undefined).
    Scores must be finite: drop frames without a score before calling."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length; got {s.shape} and {y.shape}")
    if not np.isfinite(s).all():
        raise ValueError("roc_auc needs finite scores; drop the frames that have none first")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    # average rank (1-based) of each run of equal scores: a tie shares the ranks it spans
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])  # [G]
    ends = np.r_[starts[1:], len(s)]  # [G], exclusive
    run_ranks = 0.5 * (starts + 1 + ends)  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(run_ranks, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def bootstrap_interval(groups: Sequence, statistic: Callable[[list], float], *, draws: int = 2000,
                       level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """How far a figure over sequences could move on other sequences like them: the central `level`
    interval of `statistic(resample)` over `draws` resamples of `groups` drawn with replacement, each
    resample as many groups as given. A group is one sequence's data: a sequence's frames depend on each
    other (one lost frame loses the next), so sequences are resampled whole, never frames alone.
    Resamples whose statistic is NaN (an AUC that drew a single class) are left out; (NaN, NaN) when
    every one is. The same seed gives the same interval."""
    if not groups:
        raise ValueError("bootstrap_interval needs at least one group")
    if draws < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"draws must be >= 1 and level within (0, 1); got {draws}, {level}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(groups), size=(draws, len(groups)))
    values = np.array([statistic([groups[i] for i in pick]) for pick in picks], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def absence_precision_recall(called_absent, truly_absent) -> tuple[float, float]:
    """Precision and recall of calling a frame "target absent", [N] bool each: precision = right calls /
    all calls, recall = right calls / absent frames. NaN where the denominator is 0."""
    called = np.asarray(called_absent, dtype=bool).reshape(-1)
    truth = np.asarray(truly_absent, dtype=bool).reshape(-1)
    hits = float((called & truth).sum())
    precision = hits / called.sum() if called.any() else float("nan")
    recall = hits / truth.sum() if truth.any() else float("nan")
    return float(precision), float(recall)
