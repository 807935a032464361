"""What `stark tune` leaves behind: the trial table, the heatmap, the best settings, a summary that says
how much of the search ran and whether the objective moved at all, the model with its tuned settings
(and the sequences they were tuned on) stored in it, and an MLflow run holding all of them."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...model.stark import Tokens
from ..checkpoint import make_checkpoint, to_bytes
from ..evaluate.plots import plot_tuning_map
from ..evaluate.runner import EvalSequence
from ..mlflow_runs import job_run, log_metrics, log_params
from ..storage import write_file_atomic
from ..track.config import TrackerSettings
from ..track.tracker import TrackResult
from .presence import PresenceChoice
from .search import (SearchSummary, TrialRow, best_setting, metric_value, summarize_search, trial_settings, trial_table,
                     tuning_record)


@dataclass
class TuneReport:
    rows: list[TrialRow]
    best: TrialRow
    summary: SearchSummary | None = None
    files: dict[str, Path] = field(default_factory=dict)
    run_id: str | None = None
    presence: PresenceChoice | None = None


def save_bases(path: Path, bases: dict[str, TrackResult]) -> None:
    plain = {name: {"boxes": torch.from_numpy(r.boxes), "scores": torch.from_numpy(r.scores),
                    "seconds": torch.from_numpy(r.seconds),  # tokens of either engine (torch or NumPy)
                    **{part: torch.as_tensor(getattr(r.initial_template, part)) for part in ("feat", "mask", "pos")}}
             for name, r in bases.items()}
    write_file_atomic(path, to_bytes(plain))


def load_or_compute_bases(path: Path, compute) -> dict[str, TrackResult]:
    """Base runs do not depend on the searched pair: kept beside the report so a resumed search skips them."""
    if path.is_file():
        plain = torch.load(path, map_location="cpu", weights_only=True)
        return {name: TrackResult(v["boxes"].numpy(), v["scores"].numpy(), v["seconds"].numpy(), [],
                                  Tokens(v["feat"], v["mask"], v["pos"])) for name, v in plain.items()}
    bases = compute()
    save_bases(path, bases)
    return bases


def write_tune_report(result_grid, out_dir: Path, *, metric: str, loaded, cfg, settings: TrackerSettings,
                      model_spec: str, data: str, benchmark: str, tracking_uri: str | None = None,
                      sequences: list[EvalSequence] | None = None, split: str | None = None,
                      bases: dict[str, TrackResult] | None = None, presence: PresenceChoice | None = None
                      ) -> TuneReport:
    """tracking_uri: where the MLflow run holding all of it goes (None: no run). settings: the model's resolved settings the search ran with; the tuned model stores them with
    the best pair in place. sequences: those the search ran on; recorded in the tuned model so that
    promotion can tell whether it judges on them. bases: the no-update runs, when computed; they give
    the no-update metric and whether any setting ever updates, for the flat-objective check. presence: the
    present_threshold chosen on the best setting's run (tune/presence.py); stored with the tuned settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = trial_table(result_grid)
    best = best_setting(rows)
    no_update = metric_value(metric, benchmark, bases, sequences) if bases and sequences else None
    summary = summarize_search(rows, no_update, bases)
    files: dict[str, Path] = {}

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in dataclasses.fields(TrialRow)] + ["stopped_early"])
    writer.writeheader()
    for row in sorted(rows, key=lambda r: (r.update_interval, r.score_threshold)):
        writer.writerow({**dataclasses.asdict(row), "stopped_early": not row.complete})
    files["trials"] = write_file_atomic(out_dir / "trials.csv", buffer.getvalue().encode())
    grid = (cfg.tune.update_intervals, cfg.tune.score_thresholds) if cfg.tune.search == "grid" else None
    files["heatmap"] = plot_tuning_map(
        [r.update_interval for r in rows], [r.score_threshold for r in rows], [r.score for r in rows],
        out_dir / "heatmap.png", metric=metric, complete=[r.complete for r in rows], grid=grid,
        note=(f"{summary.completed} of {summary.trials} trials completed"
              + (f"; {summary.stopped_early} stopped early by ASHA (partial: their score on the chunks they ran)"
                 if summary.stopped_early else "")
              + ("; FLAT: nothing to tune" if summary.flat else "")))
    # what the best trial tracked with, crop rule included: the tuned model keeps it
    tuned_settings = dataclasses.asdict(trial_settings(settings, best.update_interval, best.score_threshold))
    if presence is not None:
        tuned_settings["present_threshold"] = presence.threshold
    search = {"trials": summary.trials, "completed": summary.completed, "stopped_early": summary.stopped_early,
              "flat": summary.flat, "min": summary.low, "max": summary.high, "no_update": summary.no_update,
              "settings_that_update": summary.settings_that_update, "note": summary.note}
    best_info = {"metric": metric, "value": best.score, "benchmark": benchmark, "data": data,
                 "model": model_spec, "settings": tuned_settings, "search": search}
    if presence is not None:
        best_info["present"] = presence.as_record()
    files["best"] = write_file_atomic(out_dir / "best.json", json.dumps(best_info, indent=2).encode())
    text = [f"best: update_interval={best.update_interval} score_threshold={best.score_threshold:g} "
            f"{metric}={best.score:.4f}",
            f"trials: {summary.completed} of {summary.trials} completed, {summary.stopped_early} stopped early by ASHA",
            f"{metric} over completed trials: {summary.low:.4f} .. {summary.high:.4f}"
            + (f"; no updates at all: {summary.no_update:.4f}" if summary.no_update is not None else ""),
            summary.note]
    if presence is not None:
        text.append(presence.reason)
    files["summary"] = write_file_atomic(out_dir / "summary.txt", ("\n".join(text) + "\n").encode())
    # The model with its tuned settings: evaluate, track and register use them by default.
    tuned = {"metric": metric, "value": best.score, "benchmark": benchmark, "data": data, "split": split,
             "source_model": model_spec, "flat": summary.flat}
    if presence is not None:
        tuned["present_threshold_tuned"] = presence.tuned
    if sequences:
        tuned.update(tuning_record(sequences))
    base_config = (loaded.checkpoint or {}).get("config") or {"model": dataclasses.asdict(loaded.model_cfg)}
    checkpoint = make_checkpoint(loaded.model, base_config, tracker=tuned_settings, tuned=tuned)
    files["model"] = write_file_atomic(out_dir / "model_tuned.pt", to_bytes(checkpoint))

    run_id = None
    if tracking_uri:
        with job_run(tracking_uri, "tune", f"tune-{benchmark}") as (client, run_id):
            log_params(client, run_id, {"model": model_spec, "data": data, "benchmark": benchmark, "metric": metric,
                                        **{f"tune.{k}": v for k, v in dataclasses.asdict(cfg.tune).items()}})
            metrics = {f"best_{metric}": best.score, "trials": len(rows), "trials_completed": summary.completed,
                       "trials_stopped_early": summary.stopped_early, "objective_spread": summary.spread,
                       "frames_tracked": sum(r.frames_tracked for r in rows),
                       "best_update_interval": best.update_interval,
                       "best_score_threshold": best.score_threshold}
            if summary.no_update is not None:
                metrics[f"no_update_{metric}"] = summary.no_update
            tags = {"stark.tuned.update_interval": str(best.update_interval),
                    "stark.tuned.score_threshold": str(best.score_threshold),
                    "stark.tune.flat": str(summary.flat).lower(), "stark.tune.note": summary.note}
            if presence is not None:
                metrics["best_present_threshold"] = presence.threshold
                if presence.balanced_accuracy is not None:
                    metrics["absent_balanced_accuracy"] = presence.balanced_accuracy
                tags.update({"stark.tuned.present_threshold": str(presence.threshold),
                             "stark.tune.present_note": presence.reason})
            log_metrics(client, run_id, metrics, step=0)
            for key, value in tags.items():
                client.set_tag(run_id, key, value)
            client.log_dict(run_id, best_info, "best.json")
            for role in ("trials", "heatmap", "summary", "model"):
                client.log_artifact(run_id, str(files[role]))
    return TuneReport(rows, best, summary, files, run_id, presence)
