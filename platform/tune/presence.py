"""`tracker.present_threshold`, chosen after the search from the tuned tracker's own scores.

The update pair changes what the tracker sees (the dynamic template), so the threshold is read off the
scores of a run with the tuned pair: on every scored frame (not frame 0) of the tune sequences, the
visibility labels (GOT-10k absence/cover, LaSOT full occlusion / out of view) say whether the target is
truly absent, and the threshold that separates the two best is kept.

Criterion: balanced accuracy of "absent", (recall on absent frames + recall on present frames) / 2.
Absent frames are a small share of any benchmark (a few percent), so plain accuracy is maximised by
calling nothing absent, and F1 of "absent" depends on that share: both move the threshold when the
share of absent frames changes between the tune sequences and the footage the model serves. Balanced
accuracy weighs the two kinds of error by their own frame counts, so the threshold does not depend on
how often the target happens to be gone in the tune set.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..evaluate.runner import EvalSequence
from ..track.tracker import TrackResult


@dataclass(frozen=True)
class PresenceChoice:
    """The present_threshold a tune stores, and why."""

    threshold: float
    tuned: bool  # False: `threshold` is the configured one (reason says why)
    reason: str  # one sentence for the report and MLflow
    frames: int = 0  # scored frames with labels it was chosen on
    absent: int = 0  # of which truly absent
    balanced_accuracy: float | None = None  # of "absent" at `threshold`, on those frames
    absent_recall: float | None = None  # share of absent frames called absent
    present_recall: float | None = None  # share of present frames called present

    def as_record(self) -> dict:
        return {"threshold": self.threshold, "tuned": self.tuned, "reason": self.reason, "frames": self.frames,
                "absent": self.absent, "balanced_accuracy": self.balanced_accuracy,
                "absent_recall": self.absent_recall, "present_recall": self.present_recall}


def labelled_scores(results: dict[str, TrackResult], sequences: list[EvalSequence]) -> tuple[np.ndarray, np.ndarray]:
    """(scores [M], truly_absent [M] bool) over the scored frames of the sequences with ground truth."""
    scores, absent = [], []
    for seq in sequences:
        result = results.get(seq.name)
        if not seq.has_groundtruth or result is None:
            continue
        values = np.asarray(result.scores, dtype=np.float64)
        scored = np.isfinite(values)
        scores.append(values[scored])
        absent.append(~np.asarray(seq.visible, dtype=bool)[scored])
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate(scores), np.concatenate(absent)


def best_balanced_threshold(scores: np.ndarray, absent: np.ndarray) -> tuple[float, float, float, float]:
    """The threshold t in [0, 1] (present where score >= t) of highest balanced accuracy of "absent" ->
    (t, balanced accuracy, absent recall, present recall). Candidates lie midway between neighbouring
    distinct scores (and at 0 and 1), so the chosen one keeps the largest margin the data allows; among
    equally good ones the lowest wins (it calls fewer frames absent). Needs both kinds of frame."""
    scores = np.asarray(scores, dtype=np.float64)
    absent = np.asarray(absent, dtype=bool)
    distinct = np.unique(scores)
    candidates = np.unique(np.clip(np.concatenate([[0.0], (distinct[:-1] + distinct[1:]) / 2, [1.0]]), 0.0, 1.0))
    called_absent = scores[None, :] < candidates[:, None]  # [C, M]
    absent_recall = (called_absent & absent).sum(axis=1) / absent.sum()
    present_recall = (~called_absent & ~absent).sum(axis=1) / (~absent).sum()
    balanced = (absent_recall + present_recall) / 2
    best = int(np.argmax(balanced))  # first maximum: the lowest threshold
    return float(candidates[best]), float(balanced[best]), float(absent_recall[best]), float(present_recall[best])


def choose_present_threshold(results: dict[str, TrackResult], sequences: list[EvalSequence], configured: float
                             ) -> PresenceChoice:
    """present_threshold from the tuned run's `results` on `sequences`; the `configured` one, with the
    reason, when the sequences cannot decide it (no score, no absent frame, or no present frame)."""
    scores, absent = labelled_scores(results, sequences)
    if not len(scores):
        return PresenceChoice(configured, False, f"kept present_threshold={configured:g}: the tuned run has no "
                                                 "score on any frame (no score head)")
    if not absent.any():
        return PresenceChoice(configured, False, f"kept present_threshold={configured:g}: no frame of the tune "
                                                 f"sequences is labelled absent ({len(scores)} scored frames)",
                              frames=len(scores))
    if absent.all():
        return PresenceChoice(configured, False, f"kept present_threshold={configured:g}: every scored frame of "
                                                 "the tune sequences is labelled absent", frames=len(scores),
                              absent=len(scores))
    threshold, balanced, absent_recall, present_recall = best_balanced_threshold(scores, absent)
    return PresenceChoice(threshold, True,
                          f"present_threshold={threshold:.3f} maximises the balanced accuracy of 'absent' "
                          f"({balanced:.3f}: {absent_recall:.0%} of {int(absent.sum())} absent frames called "
                          f"absent, {present_recall:.0%} of {int((~absent).sum())} present frames called present)",
                          len(scores), int(absent.sum()), balanced, absent_recall, present_recall)
