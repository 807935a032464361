"""What an evaluation leaves behind: result files in the benchmark's format, submission zips,
metric tables, success/precision plots, the score head's ROC AUC (STARK-ST), and the same in an
MLflow run (`log_report`)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..mlflow_runs import log_metrics
from ..storage import write_file_atomic
from ..track.tracker import TrackResult
from . import metrics as M, results as R
from .plots import plot_benchmark
from .runner import EvalSequence

# footage has no official protocol: score it like LaSOT (OPE, absent frames count as failures)
PROTOCOLS = {**M.BENCHMARK_PROTOCOLS, "footage": {"protocol": "ope", "absent_as_failure": True}}


def resolve_metric(metric: str, benchmark: str) -> str:
    """`auto`: the benchmark's headline metric (AO on GOT-10k, success AUC elsewhere); else `metric`."""
    return ("ao" if benchmark == "got10k" else "auc") if metric == "auto" else metric


def metric_protocol(metric: str, benchmark: str) -> dict:
    """How tuning and promotion score one metric: AO by the GOT-10k protocol; success AUC by OPE with the
    benchmark's absent-frame rule (LaSOT's where the benchmark has no OPE protocol)."""
    protocol = PROTOCOLS["got10k"] if metric == "ao" else PROTOCOLS.get(benchmark, PROTOCOLS["lasot"])
    if metric == "auc" and protocol["protocol"] != "ope":
        protocol = PROTOCOLS["lasot"]
    return protocol


@dataclass
class EvalReport:
    benchmark: str
    out_dir: Path
    scores: dict[str, float]  # headline metrics (empty when no sequence has ground truth)
    metrics: M.BenchmarkMetrics | None
    files: dict[str, Path] = field(default_factory=dict)  # what was written, by role
    num_sequences: int = 0
    num_frames: int = 0
    score_auc: float | None = None  # ROC AUC of the score for IoU > 0.5; None without scores (STARK-S)
    absence: dict | None = None  # precision/recall of "target absent" (`absence_scores`); None without scores


def write_result_files(benchmark: str, results: dict[str, TrackResult], root: Path) -> Path:
    """One file (or folder) per sequence in the benchmark's own layout, under root/<benchmark>/."""
    folder = root / benchmark
    for name, result in results.items():
        if benchmark == "got10k":
            R.write_got10k_results(folder, name, result.boxes, result.seconds)
        elif benchmark == "trackingnet":
            R.write_trackingnet_results(folder, name, result.boxes)
        else:  # lasot and footage share LaSOT's one-file-per-sequence layout
            R.write_lasot_results(folder, name, result.boxes)
    return folder


def score_results(benchmark: str, results: dict[str, TrackResult], sequences: list[EvalSequence],
                  absent_as_failure: bool | None = None) -> M.BenchmarkMetrics | None:
    """Metrics over the sequences that carry ground truth; None if none does (test splits)."""
    return _score(benchmark, {name: (r.boxes, r.seconds) for name, r in results.items()}, sequences,
                  absent_as_failure)


STATIC_BOX = "static box (first frame)"  # the baseline every plot draws: the first frame's box on every frame


def static_box_metrics(benchmark: str, sequences: list[EvalSequence], absent_as_failure: bool | None = None
                       ) -> M.BenchmarkMetrics | None:
    """What a tracker that never moves scores: the first frame's box on every frame (no times, no fps)."""
    boxes = {s.name: (np.repeat(np.asarray(s.init_box, dtype=np.float64)[None], s.num_frames, axis=0), None)
             for s in sequences}
    return _score(benchmark, boxes, sequences, absent_as_failure)


def _score(benchmark: str, boxes_and_times: dict, sequences: list[EvalSequence],
           absent_as_failure: bool | None) -> M.BenchmarkMetrics | None:
    protocol = dict(PROTOCOLS[benchmark])
    if absent_as_failure is not None:
        protocol["absent_as_failure"] = absent_as_failure
    per_sequence, attributes = {}, {}
    for seq in sequences:
        if not seq.has_groundtruth or seq.name not in boxes_and_times:
            continue
        boxes, times = boxes_and_times[seq.name]
        per_sequence[seq.name] = M.sequence_metrics(boxes, seq.boxes_xywh, seq.visible, times_s=times, **protocol)
        if seq.attributes:
            attributes[seq.name] = seq.attributes
    if not per_sequence:
        return None
    return M.aggregate(per_sequence, attributes or None)


# A frame is "tracked" when its box overlaps the ground truth by more than this: GOT-10k's SR50 criterion,
# and the label STARK's score head is meant to predict (stage 2 trains it on IoU-positive crops).
SCORE_IOU_THRESHOLD = 0.5


def score_labels(results: dict[str, TrackResult], sequences: list[EvalSequence]) -> tuple[np.ndarray, np.ndarray]:
    """(scores [F], labels [F]): the tracker's score (`TrackResult.scores`: sigmoid, size- and
    aspect-consistent when on) and IoU(predicted box, ground truth) > 0.5 over every frame that has a
    score (not frame 0, not STARK-S), ground truth and a visible target with a proper box. IoU is the plain
    one of the two boxes (no clipping to the image)."""
    groups = score_label_groups(results, sequences)
    if not groups:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return np.concatenate([s for s, _ in groups]), np.concatenate([y for _, y in groups])


def score_label_groups(results: dict[str, TrackResult], sequences: list[EvalSequence]
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """`score_labels`, one (scores, labels) pair per sequence that has such frames."""
    groups = []
    for seq in sequences:
        if not seq.has_groundtruth or seq.name not in results:
            continue
        result = results[seq.name]
        gt = np.asarray(seq.boxes_xywh, dtype=np.float64)
        valid = (np.asarray(seq.visible, dtype=bool) & np.isfinite(gt).all(axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
                 & np.isfinite(result.scores))
        if not valid.any():
            continue
        iou = M.box_iou_xywh(result.boxes[valid], gt[valid])  # [F_seq]
        groups.append((np.asarray(result.scores, dtype=np.float64)[valid], iou > SCORE_IOU_THRESHOLD))
    return groups


def score_auc(results: dict[str, TrackResult], sequences: list[EvalSequence]) -> float:
    """How well the score head tells tracked frames from lost ones: ROC AUC of sigmoid(score) for
    IoU > 0.5, pooled over the frames `score_labels` keeps. NaN when there is no score (STARK-S, or
    no frame beyond the first) or every frame is on one side of 0.5."""
    scores, labels = score_labels(results, sequences)
    return M.roc_auc(scores, labels) if len(scores) else float("nan")


def score_auc_interval(results: dict[str, TrackResult], sequences: list[EvalSequence], *, draws: int = 2000,
                       level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """The `score_auc` other sequences like these could give: its `level` bootstrap interval over the
    sequences (`metrics.bootstrap_interval`). A pooled AUC over a dozen sequences moves with the few
    where the tracker follows something else at a high score, so one figure alone says little."""
    groups = score_label_groups(results, sequences)
    if not groups:
        return float("nan"), float("nan")
    return M.bootstrap_interval(groups, lambda drawn: M.roc_auc(np.concatenate([s for s, _ in drawn]),
                                                                np.concatenate([y for _, y in drawn])),
                                draws=draws, level=level, seed=seed)


def absence_scores(results: dict[str, TrackResult], sequences: list[EvalSequence]) -> dict | None:
    """How well `present` tells where the target is gone, pooled over the scored frames (not frame 0, not
    STARK-S) of the sequences with ground truth, whose visibility labels (GOT-10k absence/cover, LaSOT
    full occlusion / out of view) say where it is absent. None when no frame has a score."""
    called, truth = [], []
    for seq in sequences:
        result = results.get(seq.name)
        if not seq.has_groundtruth or result is None or result.present is None:
            continue
        scored = np.isfinite(np.asarray(result.scores, dtype=np.float64))
        called.append(~np.asarray(result.present, dtype=bool)[scored])
        truth.append(~np.asarray(seq.visible, dtype=bool)[scored])
    if not called or not sum(len(c) for c in called):
        return None
    called_absent, truly_absent = np.concatenate(called), np.concatenate(truth)
    precision, recall = M.absence_precision_recall(called_absent, truly_absent)
    return {"precision": precision, "recall": recall, "frames": int(len(truly_absent)),
            "absent": int(truly_absent.sum()), "predicted_absent": int(called_absent.sum())}


def write_report(benchmark: str, results: dict[str, TrackResult], sequences: list[EvalSequence],
                 out_dir: str | Path, label: str = "STARK", absent_as_failure: bool | None = None) -> EvalReport:
    out_dir = Path(out_dir)
    files: dict[str, Path] = {"results": write_result_files(benchmark, results, out_dir)}
    frames = {s.name: s.num_frames for s in sequences if s.name in results}
    no_truth = [s for s in sequences if not s.has_groundtruth and s.name in results]
    if benchmark == "got10k" and no_truth:
        files["submission"] = R.make_got10k_submission(files["results"], out_dir / "got10k_submission.zip", frames)
    if benchmark == "trackingnet" and no_truth:
        files["submission"] = R.make_trackingnet_submission(files["results"], out_dir / "trackingnet_submission.zip",
                                                            frames)
    metrics = score_results(benchmark, results, sequences, absent_as_failure)
    scores = dict(metrics.scores) if metrics else {}
    auc_scores, auc_labels = score_labels(results, sequences)
    auc = M.roc_auc(auc_scores, auc_labels) if len(auc_scores) else None
    if metrics is not None:
        files.update({f"table_{k}": v for k, v in R.write_metric_tables(metrics, out_dir).items()})
        static = static_box_metrics(benchmark, [s for s in sequences if s.name in results], absent_as_failure)
        files.update({f"plot_{k}": v for k, v in plot_benchmark({label: metrics, STATIC_BOX: static}, out_dir,
                                                                 benchmark=benchmark).items()})
    summary = {"benchmark": benchmark, "sequences": len(results), "frames": int(sum(frames.values())),
               "scores": scores}
    if auc is not None:  # NaN (one class only) is written as null: JSON has no NaN
        summary["score_auc"] = {"auc": auc if np.isfinite(auc) else None, "frames": int(len(auc_labels)),
                                "iou_above_0.5": int(auc_labels.sum()), "label": "IoU(box, ground truth) > 0.5"}
    absence = absence_scores(results, sequences)
    if absence is not None:  # NaN (nothing called absent, or nothing absent) as null
        summary["absence"] = {k: (v if np.isfinite(v) else None) for k, v in absence.items()}
    files["summary"] = write_file_atomic(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    return EvalReport(benchmark, out_dir, scores, metrics, files, len(results), int(sum(frames.values())), auc,
                      absence)


def log_report(client, run_id: str, report: EvalReport) -> None:
    """An evaluation's metrics (finite ones) and files, to MLflow run `run_id`."""
    metrics = {f"{report.benchmark}/{k}": float(v) for k, v in report.scores.items()}
    if report.score_auc is not None:
        metrics["score_auc"] = float(report.score_auc)
    if report.absence is not None:
        for key in ("precision", "recall"):
            metrics[f"absent_{key}"] = float(report.absence[key])
    log_metrics(client, run_id, metrics, step=0)
    for path in report.files.values():
        if path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=f"eval/{report.benchmark}/{path.name}")
        else:
            client.log_artifact(run_id, str(path), artifact_path=f"eval/{report.benchmark}")
