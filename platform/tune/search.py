"""Search STARK-ST's update_interval and score_threshold with Ray Tune, each trial an evaluation.

Two levers keep K settings far cheaper than K evaluations:
- Reuse. Until a sequence's first dynamic-template update, tracking does not depend on the settings.
  One "base" run per sequence, with no updates, gives every frame's box and score; a trial with
  (interval U, threshold T) updates first at the smallest k*U whose base score exceeds T, so it
  takes frames 0..kU from the base and tracks only from there on (the initial template's tokens are
  reused too). A setting that never fires on a sequence costs nothing on it.
- Early stopping. A trial evaluates the sequences chunk by chunk and reports its running metric
  after each chunk, so an ASHA scheduler stops poor settings after a few chunks.
The base run, the sequences and the model go to the object store once (`tune.with_parameters`).
Every trial tracks with the model's resolved settings (crop rule, box margin) and only its own
update_interval and score_threshold in place of theirs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .. import storage
from ..evaluate import metrics as M
from ..evaluate.config import EvalConfig
from ..evaluate.report import metric_protocol, resolve_metric
from ..evaluate.runner import EvalSequence, TrackingWorker, read_sequence_frames, sequence_fingerprint, track_sequences
from ..track.config import TrackerSettings
from ..track.tracker import ResumePoint, TrackResult, should_update, track_many
from .config import TuneConfig

FLAT_TOLERANCE = 1e-4  # a search whose completed trials all lie within this of each other found nothing to tune
FINGERPRINTS_LISTED_UP_TO = 2000  # sequences; beyond, the tuning record keeps only the set's hash


# --- reuse ----------------------------------------------------------------------------------------
def no_updates(settings: TrackerSettings) -> TrackerSettings:
    """`settings` with a dynamic template that is never replaced: the base runs' settings."""
    return dataclasses.replace(settings, update_interval=10**9, score_threshold=1.0)


def trial_settings(settings: TrackerSettings, update_interval: int, score_threshold: float) -> TrackerSettings:
    """A trial's settings: the model's resolved ones with the searched pair in place of theirs."""
    return dataclasses.replace(settings, update_interval=int(update_interval), score_threshold=float(score_threshold))


def first_update_frame(base_scores: np.ndarray, settings: TrackerSettings) -> int | None:
    """Frame where a run with `settings` first replaces its dynamic template, judged on the base run
    (identical to it up to that frame) by the tracker's own rule; None if it never does within the
    sequence. Only interval frames are asked: the rule fires on no other."""
    for frame in range(settings.update_interval, len(base_scores), settings.update_interval):
        if should_update(frame, float(base_scores[frame]), settings):
            return frame
    return None


def compute_bases(packed_model: dict, settings: TrackerSettings, sequences: list[EvalSequence],
                  eval_cfg: EvalConfig, storage_cfg: storage.StorageConfig | None = None) -> dict[str, TrackResult]:
    """One run per sequence with `settings` but no dynamic-template updates, keeping the initial
    template's tokens."""
    return track_sequences(packed_model, no_updates(settings), sequences, eval_cfg, storage_cfg)


def track_chunk(worker: TrackingWorker, settings: TrackerSettings, chunk: list[EvalSequence],
                bases: dict[str, TrackResult] | None, storage_cfg) -> tuple[dict[str, TrackResult], int]:
    """Track a chunk with `settings`, reusing base prefixes when given. Returns (results, frames tracked)."""
    tracker = worker.tracker.with_settings(settings)
    results: dict[str, TrackResult] = {}
    items, names, tracked = [], [], 0
    for seq in chunk:
        base = bases.get(seq.name) if bases else None
        if base is None:
            items.append((read_sequence_frames(seq.frames, storage_cfg), seq.init_box))
            tracked += seq.num_frames - 1
        else:
            frame = first_update_frame(base.scores, settings)
            if frame is None:  # never fires: the base run is this setting's run
                results[seq.name] = dataclasses.replace(base, updates=[])
                continue
            items.append((read_sequence_frames(seq.frames, storage_cfg, start=frame), ResumePoint(base, frame)))
            tracked += seq.num_frames - 1 - frame
        names.append(seq.name)
    for index, result in track_many(tracker, items, worker.batch_size):
        results[names[index]] = result
    return results, tracked


def tuned_run(packed_model: dict, settings: TrackerSettings, sequences: list[EvalSequence], eval_cfg: EvalConfig,
              storage_cfg: storage.StorageConfig | None = None, bases: dict[str, TrackResult] | None = None
              ) -> dict[str, TrackResult]:
    """Every sequence tracked with `settings` (the search's best), from the base runs' prefixes when given:
    the run whose per-frame scores choose present_threshold (tune/presence.py)."""
    if not bases:
        return track_sequences(packed_model, settings, sequences, eval_cfg, storage_cfg)
    worker = TrackingWorker(packed_model, settings, eval_cfg, storage_cfg)
    return track_chunk(worker, settings, sequences, bases, storage_cfg)[0]


# --- scoring ----------------------------------------------------------------------------------------
def metric_value(metric: str, benchmark: str, results: dict[str, TrackResult],
                 sequences: list[EvalSequence]) -> float:
    """AO (GOT-10k protocol) or success AUC (OPE, the benchmark's absent-frame rule) over `sequences`."""
    protocol = metric_protocol(metric, benchmark)
    per_sequence = {s.name: M.sequence_metrics(results[s.name].boxes, s.boxes_xywh, s.visible, **protocol)
                    for s in sequences}
    return float(M.aggregate(per_sequence).scores[metric])


def chunks_of(sequences: list[EvalSequence], size: int) -> list[list[EvalSequence]]:
    return [sequences[i:i + size] for i in range(0, len(sequences), size)]


# --- the trial ----------------------------------------------------------------------------------------
def tune_trial(config: dict, packed_model=None, settings: TrackerSettings | None = None, sequences=None,
               bases=None, tune_cfg: TuneConfig | None = None, metric: str = "ao", benchmark: str = "got10k",
               eval_cfg: EvalConfig | None = None, storage_cfg=None) -> None:
    """One setting: evaluate chunk by chunk, reporting the running metric after each chunk.
    `settings`: the model's resolved settings; the trial replaces only the searched pair."""
    from ray import tune

    tcfg = tune_cfg or TuneConfig()
    settings = trial_settings(settings or TrackerSettings(), config["update_interval"], config["score_threshold"])
    worker_cfg = dataclasses.replace(eval_cfg or EvalConfig(), batch_size=tcfg.batch_size)
    worker = TrackingWorker(packed_model, settings, worker_cfg, storage_cfg, threads=max(1, int(tcfg.cpus_per_trial)))
    done: dict[str, TrackResult] = {}
    seen: list[EvalSequence] = []
    frames_tracked = 0
    chunks = chunks_of(sequences, tcfg.chunk_sequences)
    for k, chunk in enumerate(chunks, start=1):
        results, tracked = track_chunk(worker, settings, chunk, bases if tcfg.reuse else None, storage_cfg)
        done.update(results)
        seen.extend(chunk)
        frames_tracked += tracked
        tune.report({"score": metric_value(metric, benchmark, done, seen), "chunks": k,
                     "complete": k == len(chunks), "frames_tracked": frames_tracked,
                     "sequences": len(seen)})


def run_search(packed_model: dict, settings: TrackerSettings, sequences: list[EvalSequence], tune_cfg: TuneConfig,
               benchmark: str, experiment_name: str, eval_cfg: EvalConfig, storage_cfg=None, bases=None):
    """Run (or resume) the Tune experiment; returns Ray Tune's ResultGrid. `settings`: the model's
    resolved settings, which every trial keeps but for the searched pair (the bases must be made with
    them too)."""
    import os

    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    metric = resolve_metric(tune_cfg.metric, benchmark)
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, packed_model=packed_model, settings=settings, sequences=sequences,
                             bases=bases, tune_cfg=tune_cfg, metric=metric, benchmark=benchmark,
                             eval_cfg=eval_cfg, storage_cfg=storage_cfg),
        {"cpu": tune_cfg.cpus_per_trial, "gpu": tune_cfg.gpus_per_trial})
    storage_path = os.path.abspath(tune_cfg.storage_path) if not storage.is_s3(tune_cfg.storage_path) \
        else tune_cfg.storage_path
    experiment = f"{storage_path.rstrip('/')}/{experiment_name}"
    if tune.Tuner.can_restore(experiment):
        # an interrupted search: finished trials are kept, unfinished ones run again
        return tune.Tuner.restore(experiment, trainable, resume_unfinished=True, resume_errored=True).fit()

    num_chunks = len(chunks_of(sequences, tune_cfg.chunk_sequences))
    if tune_cfg.scheduler == "asha" and num_chunks > 1:
        scheduler = ASHAScheduler(time_attr="chunks", max_t=num_chunks, grace_period=tune_cfg.grace_chunks,
                                  reduction_factor=tune_cfg.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    if tune_cfg.search == "grid":
        space = {"update_interval": tune.grid_search(list(tune_cfg.update_intervals)),
                 "score_threshold": tune.grid_search(list(tune_cfg.score_thresholds))}
        search_alg, num_samples = None, 1
    else:
        lo, hi = tune_cfg.update_interval_range
        space = {"update_interval": tune.randint(lo, hi + 1),
                 "score_threshold": tune.uniform(*tune_cfg.score_threshold_range)}
        num_samples = tune_cfg.num_samples
        search_alg = None
        if tune_cfg.search == "optuna":
            from ray.tune.search.optuna import OptunaSearch

            search_alg = OptunaSearch(seed=tune_cfg.seed)
    tuner = tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=scheduler, search_alg=search_alg,
                                    num_samples=num_samples,
                                    max_concurrent_trials=tune_cfg.max_concurrent_trials or None,
                                    reuse_actors=True),  # a trial actor unpacks the model once, not per trial
        # each trial's result.json / progress.csv, named here because the console setup turns Tune's automatic
        # loggers off (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS: no TensorBoard hint)
        run_config=tune.RunConfig(name=experiment_name, storage_path=storage_path, verbose=0,
                                  callbacks=[JsonLoggerCallback(), CSVLoggerCallback()]))
    return tuner.fit()


@dataclass
class TrialRow:
    update_interval: int
    score_threshold: float
    score: float
    chunks: int
    complete: bool
    frames_tracked: int


def trial_table(result_grid) -> list[TrialRow]:
    """Every trial's last report, in trial order."""
    rows = []
    for result in result_grid:
        if result.metrics is None or "score" not in result.metrics:
            continue
        m, c = result.metrics, result.config
        rows.append(TrialRow(int(c["update_interval"]), float(c["score_threshold"]), float(m["score"]),
                             int(m["chunks"]), bool(m["complete"]), int(m["frames_tracked"])))
    return rows


def best_setting(rows: list[TrialRow]) -> TrialRow:
    """The best trial among those that saw every sequence (a stopped trial's score covers fewer)."""
    complete = [r for r in rows if r.complete and not math.isnan(r.score)]
    if not complete:
        raise ValueError("no trial evaluated every sequence")
    return max(complete, key=lambda r: (r.score, -r.update_interval, r.score_threshold))


# --- what a search found ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchSummary:
    """How much of the search ran, and whether the objective moved at all."""

    trials: int  # trials that reported at least once
    completed: int  # trials that saw every sequence
    stopped_early: int  # trials ASHA stopped after fewer chunks
    low: float  # min and max of the metric over completed trials
    high: float
    no_update: float | None  # the metric with no dynamic-template update (the base runs), when known
    settings_that_update: int | None  # trials whose setting replaces the template on some sequence (needs bases)
    flat: bool
    note: str  # one sentence for the report and MLflow

    @property
    def spread(self) -> float:
        return self.high - self.low


def summarize_search(rows: list[TrialRow], no_update: float | None = None,
                     bases: dict[str, TrackResult] | None = None, tolerance: float = FLAT_TOLERANCE) -> SearchSummary:
    """Flat when the completed trials' metric spans at most `tolerance`, or every completed trial equals
    the no-update result: then the chosen setting is arbitrary and the report must say so.

    no_update: the metric of the base runs (no updates), when they were computed.
    bases: the base runs; with them, each trial's setting is checked for ever firing on any sequence.
    """
    complete = [r for r in rows if r.complete and not math.isnan(r.score)]
    stopped = sum(1 for r in rows if not r.complete)
    values = [r.score for r in complete]
    low, high = (min(values), max(values)) if values else (math.nan, math.nan)
    fires = None
    if bases:
        fires = sum(1 for r in rows if any(
            first_update_frame(b.scores, trial_settings(TrackerSettings(), r.update_interval, r.score_threshold))
            is not None
            for b in bases.values()))
    as_no_update = no_update is not None and bool(values) and all(abs(v - no_update) <= tolerance for v in values)
    flat = bool(values) and (high - low <= tolerance or as_no_update)
    counts = f"{len(complete)} of {len(rows)} trials completed, {stopped} stopped early by ASHA"
    if not flat:
        note = f"objective ranges {low:.4f} .. {high:.4f} over the completed trials; {counts}"
    else:
        if fires == 0:
            scored = [s for b in bases.values() for s in b.scores if not math.isnan(s)]
            why = (f"the score never crosses the thresholds on an update frame (highest score on any frame "
                   f"{max(scored):.3f}), so no setting ever updates the template" if scored
                   else "no setting ever updates the template")
        elif as_no_update:
            why = "every setting gives the no-update result: settings do not change tracking"
        else:
            why = "the score never crosses the thresholds / settings do not change tracking"
        note = (f"objective flat over the grid ({low:.4f} .. {high:.4f}, tolerance {tolerance:g}): {why}; "
                f"the chosen setting is arbitrary; {counts}")
    return SearchSummary(len(rows), len(complete), stopped, low, high, no_update, fires, flat, note)


# --- what a search was run on ---------------------------------------------------------------------------
def sequence_set_hash(fingerprints: list[str]) -> str:
    """One identity for a set of sequence fingerprints (order does not matter)."""
    return hashlib.sha256(",".join(sorted(fingerprints)).encode()).hexdigest()[:16]


def tuning_record(sequences: list[EvalSequence]) -> dict:
    """Which sequences a search ran on, in the form promotion compares against its own sequences
    (stored in the tuned checkpoint, and so in the registered version's `stark.tuned` tag)."""
    prints = [sequence_fingerprint(s) for s in sequences]
    record = {"sequences": len(prints), "sequence_set": sequence_set_hash(prints)}
    if len(prints) <= FINGERPRINTS_LISTED_UP_TO:
        record["sequence_fingerprints"] = sorted(prints)
    return record
