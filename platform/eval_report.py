"""What an evaluation leaves behind: result files in the benchmark's format, submission zips,
metric tables, success/precision plots, and (when a run is active) the same in MLflow."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stark.platform import metrics as M
from stark.platform import results as R
from stark.platform.evaluation import EvalSequence
from stark.platform.plots import plot_benchmark
from stark.platform.tracker import TrackResult

# footage has no official protocol: score it like LaSOT (OPE, absent frames count as failures)
PROTOCOLS = {**M.BENCHMARK_PROTOCOLS, "footage": {"protocol": "ope", "absent_as_failure": True}}


@dataclass
class EvalReport:
    benchmark: str
    out_dir: Path
    scores: dict[str, float]  # headline metrics (empty when no sequence has ground truth)
    metrics: M.BenchmarkMetrics | None
    files: dict[str, Path] = field(default_factory=dict)  # what was written, by role
    num_sequences: int = 0
    num_frames: int = 0


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
    protocol = dict(PROTOCOLS[benchmark])
    if absent_as_failure is not None:
        protocol["absent_as_failure"] = absent_as_failure
    per_sequence, attributes = {}, {}
    for seq in sequences:
        if not seq.has_groundtruth or seq.name not in results:
            continue
        result = results[seq.name]
        per_sequence[seq.name] = M.sequence_metrics(result.boxes, seq.boxes_xywh, seq.visible,
                                                    times_s=result.seconds, **protocol)
        if seq.attributes:
            attributes[seq.name] = seq.attributes
    if not per_sequence:
        return None
    return M.aggregate(per_sequence, attributes or None)


def write_report(benchmark: str, results: dict[str, TrackResult], sequences: list[EvalSequence],
                 out_dir: str | Path, label: str = "STARK", absent_as_failure: bool | None = None,
                 log_to_mlflow: bool = True) -> EvalReport:
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
    if metrics is not None:
        files.update({f"table_{k}": v for k, v in R.write_metric_tables(metrics, out_dir).items()})
        files.update({f"plot_{k}": v for k, v in plot_benchmark({label: metrics}, out_dir,
                                                                 benchmark=benchmark).items()})
    summary = {"benchmark": benchmark, "sequences": len(results), "frames": int(sum(frames.values())),
               "scores": scores}
    files["summary"] = R.atomic_write_bytes(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    report = EvalReport(benchmark, out_dir, scores, metrics, files, len(results), int(sum(frames.values())))
    if log_to_mlflow:
        log_report_to_active_run(report)
    return report


def log_report_to_active_run(report: EvalReport) -> bool:
    """Metrics and files go to the active MLflow run, if there is one. Returns whether it logged."""
    import mlflow

    if mlflow.active_run() is None:
        return False
    mlflow.log_metrics({f"{report.benchmark}/{k}": float(v) for k, v in report.scores.items() if np.isfinite(v)})
    for role, path in report.files.items():
        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=f"eval/{report.benchmark}/{path.name}")
        else:
            mlflow.log_artifact(str(path), artifact_path=f"eval/{report.benchmark}")
    return True
