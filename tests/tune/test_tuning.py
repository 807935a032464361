"""`stark tune`: the search finds the exhaustive argmax, reuses settings-independent work exactly,
stops poor settings early, stores the best with the model, and resumes when interrupted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stark.platform.evaluate.runner import EvalSequence, FramesRef, TrackingWorker, load_sequences, pack_model, track_sequences
from stark.platform.evaluate.config import EvalConfig
from stark.platform.track.config import TrackerSettings
from stark.platform.track.tracker import TrackResult
from stark.platform.tune.presence import best_balanced_threshold, choose_present_threshold, labelled_scores
from stark.platform.tune.search import (TrialRow, best_setting, compute_bases, first_update_frame, metric_value,
                                        run_search, summarize_search, track_chunk, trial_table, tuned_run)
from stark.platform.tune.config import TuneConfig

# thresholds where a box_iou score head's outputs are on these small sequences (its scores estimate P(IoU > 0.5))
INTERVALS, THRESHOLDS = [2, 5, 9], [0.05, 0.15, 0.3]


@pytest.fixture(scope="module")
def packed(trained_checkpoint):
    """A trained tiny model, so that the settings change its boxes and the metric."""
    from stark.platform.model_loading import load_model

    loaded = load_model(str(trained_checkpoint))
    return pack_model(loaded.model, loaded.model_cfg)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def exhaustive(packed, sequences) -> dict[tuple[int, float], float]:
    """Every grid setting evaluated in full, the plain way."""
    scores = {}
    for u in INTERVALS:
        for t in THRESHOLDS:
            results = track_sequences(packed, TrackerSettings(u, t), sequences, EvalConfig(num_workers=0, batch_size=6))
            scores[(u, t)] = metric_value("ao", "got10k", results, sequences)
    return scores


@pytest.fixture(scope="module")
def exhaustive_scores(packed, val_tree):
    return exhaustive(packed, load_sequences(str(val_tree), split="val"))


def test_first_update_frame_follows_the_update_rule():
    scores = np.array([np.nan, 0.9, 0.2, 0.4, 0.8, 0.6, 0.9])
    assert first_update_frame(scores, TrackerSettings(2, 0.5)) == 4  # frame 2 is below the threshold
    assert first_update_frame(scores, TrackerSettings(3, 0.5)) == 6
    assert first_update_frame(scores, TrackerSettings(2, 0.95)) is None
    assert first_update_frame(scores, TrackerSettings(10, 0.0)) is None  # no interval frame in the sequence


def test_reusing_the_base_run_gives_exactly_the_full_run(packed, val_tree):
    sequences = load_sequences(str(val_tree), split="val")
    bases = compute_bases(packed, TrackerSettings(), sequences, EvalConfig(num_workers=0, batch_size=3))
    worker = TrackingWorker(packed, TrackerSettings(), EvalConfig(batch_size=3), None)
    for settings in (TrackerSettings(2, 0.3), TrackerSettings(5, 0.5), TrackerSettings(9, 0.7)):
        full = track_sequences(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=3))
        reused, tracked = track_chunk(worker, settings, sequences, bases, None)
        assert tracked < sum(s.num_frames - 1 for s in sequences) or settings.update_interval == 2
        for name, result in full.items():
            np.testing.assert_allclose(reused[name].boxes, result.boxes, atol=1e-3)
            assert reused[name].updates == result.updates


def test_grid_search_returns_the_argmax_of_an_exhaustive_evaluation(packed, val_tree, exhaustive_scores, ray_local,
                                                                    tmp_path):
    sequences = load_sequences(str(val_tree), split="val")
    cfg = TuneConfig(update_intervals=INTERVALS, score_thresholds=THRESHOLDS, scheduler="none", chunk_sequences=2,
                     storage_path=str(tmp_path), batch_size=4)
    bases = compute_bases(packed, TrackerSettings(), sequences, EvalConfig(num_workers=0, batch_size=6))
    rows = trial_table(run_search(packed, TrackerSettings(), sequences, cfg, "got10k", "grid", EvalConfig(), None,
                                  bases))
    assert len(rows) == 9 and all(r.complete for r in rows)
    for row in rows:
        assert row.score == pytest.approx(exhaustive_scores[(row.update_interval, row.score_threshold)], abs=1e-6)
    best = best_setting(rows)
    expected = best_setting([TrialRow(u, t, s, 3, True, 0) for (u, t), s in exhaustive_scores.items()])
    assert (best.update_interval, best.score_threshold) == (expected.update_interval, expected.score_threshold)


def test_early_stopping_tracks_fewer_chunks_and_keeps_the_best_near_the_top(packed, val_tree, exhaustive_scores,
                                                                           ray_local, tmp_path):
    sequences = load_sequences(str(val_tree), split="val")
    cfg = TuneConfig(update_intervals=INTERVALS, score_thresholds=THRESHOLDS, scheduler="asha", chunk_sequences=2,
                     grace_chunks=1, reduction_factor=3, reuse=False, storage_path=str(tmp_path), batch_size=4,
                     max_concurrent_trials=1)  # trials report in grid order: ASHA's stops are the same every run
    rows = trial_table(run_search(packed, TrackerSettings(), sequences, cfg, "got10k", "asha", EvalConfig(), None,
                                  None))
    assert len(rows) == 9
    assert sum(r.chunks for r in rows) < 9 * 3  # exhaustive: every setting sees all 3 chunks
    finished = sorted((r for r in rows if r.complete), key=lambda r: -r.score)
    best_exhaustive = max(exhaustive_scores.values())
    # the best setting ASHA ran to the end scores within 0.02 AO of the best of the exhaustive grid
    assert finished and finished[0].score >= best_exhaustive - 0.02


def test_a_search_whose_trials_all_score_the_same_is_reported_flat_with_its_trial_counts():
    rows = [TrialRow(u, t, 0.4123, 3, True, 0) for u in (2, 5) for t in (0.5, 0.7)] + [TrialRow(9, 0.5, 0.41, 1, False, 0)]
    summary = summarize_search(rows)
    assert summary.flat and summary.spread == 0.0
    assert (summary.trials, summary.completed, summary.stopped_early) == (5, 4, 1)
    assert "objective flat over the grid" in summary.note and "4 of 5 trials completed, 1 stopped early" in summary.note


def test_a_search_whose_scores_differ_is_not_flat():
    rows = [TrialRow(2, 0.5, 0.40, 3, True, 0), TrialRow(5, 0.5, 0.45, 3, True, 0)]
    summary = summarize_search(rows)
    assert not summary.flat and "flat" not in summary.note and "2 of 2 trials completed" in summary.note


def test_every_trial_at_the_no_update_result_is_flat_even_beyond_the_tolerance_of_each_other():
    rows = [TrialRow(2, 0.5, 0.40000, 3, True, 0), TrialRow(5, 0.5, 0.40009, 3, True, 0),
            TrialRow(9, 0.5, 0.40018, 3, True, 0)]  # spread 1.8e-4 > 1e-4, but each within 1e-4 of no-update
    assert not summarize_search(rows).flat
    summary = summarize_search(rows, no_update=0.40009)
    assert summary.flat and "settings do not change tracking" in summary.note


def scored(name: str, visible: list[int], scores: list[float]) -> tuple[EvalSequence, TrackResult]:
    """A labelled sequence and a run of it with the given per-frame scores (frame 0 has none)."""
    n = len(visible)
    seq = EvalSequence(name, "got10k", "val", FramesRef("images", ()), np.tile([0.0, 0.0, 10.0, 10.0], (n, 1)),
                       np.asarray(visible, dtype=bool), True)
    return seq, TrackResult(np.zeros((n, 4)), np.asarray([np.nan] + scores), np.zeros(n), [])


def balanced_accuracy(scores: np.ndarray, absent: np.ndarray, threshold: float) -> float:
    called_absent = scores < threshold
    return ((called_absent & absent).sum() / absent.sum() + (~called_absent & ~absent).sum() / (~absent).sum()) / 2


def test_present_threshold_separates_absent_from_present_frames_midway_between_their_scores():
    # frame 0 carries no score and is not counted; absent frames score 0.1-0.2, present ones 0.6-0.9
    a, ra = scored("a", [1, 1, 0, 0, 1], [0.8, 0.2, 0.1, 0.6])
    b, rb = scored("b", [1, 1, 0], [0.9, 0.15])
    choice = choose_present_threshold({"a": ra, "b": rb}, [a, b], configured=0.5)
    assert choice.tuned and choice.threshold == pytest.approx((0.2 + 0.6) / 2)
    assert choice.balanced_accuracy == 1.0 and (choice.frames, choice.absent) == (6, 3)
    assert "balanced accuracy" in choice.reason


def test_overlapping_scores_get_the_threshold_of_highest_balanced_accuracy_not_of_plain_accuracy():
    # 2 absent frames among 10: calling nothing absent is 80% accurate but only 50% balanced
    scores = np.array([0.30, 0.45, 0.40, 0.50, 0.60, 0.70, 0.80, 0.85, 0.90, 0.95])
    absent = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    threshold, balanced, absent_recall, present_recall = best_balanced_threshold(scores, absent)
    every = max(balanced_accuracy(scores, absent, t) for t in np.linspace(0, 1, 1001))
    assert balanced == pytest.approx(every) and balanced_accuracy(scores, absent, threshold) == balanced
    assert absent_recall == 1.0 and present_recall == pytest.approx(7 / 8)  # 0.40 < 0.45 is called absent too


def test_without_an_absent_frame_the_configured_present_threshold_is_kept_and_the_reason_given():
    a, ra = scored("a", [1, 1, 1, 1], [0.8, 0.2, 0.6])
    choice = choose_present_threshold({"a": ra}, [a], configured=0.4)
    assert not choice.tuned and choice.threshold == 0.4
    assert "no frame of the tune sequences is labelled absent" in choice.reason
    s, rs = scored("s", [1, 0, 1], [np.nan, np.nan])  # STARK-S: no score at all
    assert "no score" in choose_present_threshold({"s": rs}, [s], configured=0.4).reason


def test_present_threshold_is_the_best_on_the_tuned_runs_scores_of_generated_sequences_with_absences(packed, val_tree):
    sequences = load_sequences(str(val_tree), split="val")
    settings = TrackerSettings(5, 0.15)
    bases = compute_bases(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=6))
    run = tuned_run(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=6), None, bases)
    plain = track_sequences(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=6))
    for name, result in plain.items():  # the run it reads is the best setting's own (reused prefixes are exact)
        np.testing.assert_allclose(run[name].scores, result.scores, atol=1e-4)
    choice = choose_present_threshold(run, sequences, configured=settings.present_threshold)
    scores, absent = labelled_scores(run, sequences)
    assert absent.any() and choice.tuned and choice.absent == int(absent.sum())  # the generator hides the target
    assert choice.balanced_accuracy == pytest.approx(max(balanced_accuracy(scores, absent, t)
                                                         for t in np.concatenate([scores, [0.0, 1.0]])))
    assert choice.balanced_accuracy >= balanced_accuracy(scores, absent, settings.present_threshold)


@pytest.mark.slow
def test_a_score_that_never_crosses_the_thresholds_makes_a_flat_report_and_says_so_in_mlflow(
        random_checkpoint, val_tree, ray_local, tmp_path, monkeypatch):
    import json

    import mlflow

    from stark.platform.experiment import load_config
    from stark.platform.model_loading import load_model
    from stark.platform.tune.report import write_tune_report

    monkeypatch.chdir(tmp_path)  # anything MLflow puts in the working folder stays in tmp_path
    loaded = load_model(str(random_checkpoint))
    packed = pack_model(loaded.model, loaded.model_cfg)
    sequences = load_sequences(str(val_tree), split="val")
    cfg = load_config("stark_tiny")
    # no sigmoid exceeds 1.0: no setting of this grid ever replaces the template
    tune_cfg = TuneConfig(update_intervals=INTERVALS, score_thresholds=[1.0], scheduler="none", chunk_sequences=2,
                          storage_path=str(tmp_path / "trials"), batch_size=4)
    settings = cfg.tracker_choice.for_model(loaded.tracker)
    bases = compute_bases(packed, settings, sequences, EvalConfig(num_workers=0, batch_size=6))
    grid = run_search(packed, settings, sequences, tune_cfg, "got10k", "flat", EvalConfig(), None, bases)
    presence = choose_present_threshold(tuned_run(packed, settings, sequences, EvalConfig(num_workers=0), None, bases),
                                        sequences, settings.present_threshold)
    saved_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    try:
        report = write_tune_report(grid, tmp_path / "report", metric="ao", loaded=loaded, cfg=cfg, settings=settings,
                                   model_spec=str(random_checkpoint), data=str(val_tree), benchmark="got10k",
                                   tracking_uri=mlflow.get_tracking_uri(),
                                   sequences=sequences, split="val", bases=bases, presence=presence)
        (run,) = mlflow.search_runs(experiment_names=["stark-tune"], output_format="list")
    finally:
        mlflow.set_tracking_uri(saved_uri)

    assert report.summary.flat and report.summary.settings_that_update == 0
    assert report.summary.no_update == pytest.approx(metric_value("ao", "got10k", bases, sequences))
    text = (tmp_path / "report" / "summary.txt").read_text()
    assert "objective flat over the grid" in text and "never crosses the thresholds" in text
    assert "3 of 3 completed, 0 stopped early" in text
    best = json.loads((tmp_path / "report" / "best.json").read_text())
    assert best["search"]["flat"] is True and best["search"]["completed"] == 3
    assert "stopped_early" in (tmp_path / "report" / "trials.csv").read_text().splitlines()[0]
    assert run.data.tags["stark.tune.flat"] == "true" and "objective flat" in run.data.tags["stark.tune.note"]
    assert run.data.metrics["trials_completed"] == 3 and run.data.metrics["trials_stopped_early"] == 0
    tuned = torch_load_tuned(report.files["model"])
    assert tuned["flat"] is True and tuned["split"] == "val" and tuned["sequences"] == len(sequences)
    # the present threshold chosen after the search is stored, reported and logged with the tuned pair
    assert presence.tuned and best["settings"]["present_threshold"] == presence.threshold
    assert best["present"]["balanced_accuracy"] == presence.balanced_accuracy and presence.reason in text
    assert torch_load_checkpoint(report.files["model"])["tracker"]["present_threshold"] == presence.threshold
    assert float(run.data.tags["stark.tuned.present_threshold"]) == presence.threshold
    assert run.data.metrics["best_present_threshold"] == pytest.approx(presence.threshold)


def torch_load_checkpoint(path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def torch_load_tuned(path) -> dict:
    return torch_load_checkpoint(path)["tuned"]


@pytest.fixture(scope="module")
def tiny_checkpoint(trained_checkpoint):
    return trained_checkpoint


RESUME_INTERVALS, RESUME_THRESHOLDS = [2, 9], [0.05, 0.3]  # 4 trials: enough to cut a search between two of them


def tune_command(model, data, storage, out):
    return [sys.executable, "-m", "stark.jobs.tune", "--config", "stark_tiny", "--model", str(model), "--data",
            str(data), "--split", "val", "--out", str(out), f"tune.storage_path={storage}",
            f"tune.update_intervals={RESUME_INTERVALS}", f"tune.score_thresholds={RESUME_THRESHOLDS}",
            "tune.chunk_sequences=2", "tune.batch_size=4", "evaluate.num_workers=0"]


@pytest.mark.slow
def test_an_interrupted_tune_resumes_without_redoing_finished_trials_and_evaluate_uses_its_best(
        tiny_checkpoint, val_tree, tmp_path):
    import mlflow

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "RAY_ADDRESS": ""}
    storage = tmp_path / "tune"
    command = tune_command(tiny_checkpoint, val_tree, storage, tmp_path / "report") + ["tune.max_concurrent_trials=1"]
    first = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=open(tmp_path / "first.log", "w"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    finished: dict[Path, bytes] = {}
    while time.monotonic() < deadline and len(finished) < 2:
        time.sleep(1)
        # a trial is finished once its last row says done: completed, or stopped early by ASHA
        finished = {p: p.read_bytes() for p in storage.glob("*/*/result.json") if b'"done": true' in p.read_bytes()}
    assert len(finished) >= 2, "the first run should finish a few trials before it is interrupted: " + \
        (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    second = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "best: update_interval=" in second.stdout
    for path, content in finished.items():  # finished trials were restored, not run again
        assert path.read_bytes() == content
    assert len(list(storage.glob("*/*/result.json"))) == 4

    # the best settings reach MLflow, and evaluating the tuned model uses them
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    (run,) = mlflow.search_runs(experiment_names=["stark-tune"], output_format="list")
    best_u = int(run.data.tags["stark.tuned.update_interval"])
    best_t = float(run.data.tags["stark.tuned.score_threshold"])
    best_p = float(run.data.tags["stark.tuned.present_threshold"])  # the val tree hides its targets now and then
    assert "maximises the balanced accuracy of 'absent'" in second.stdout
    assert (best_u, best_t) in {(u, t) for u in RESUME_INTERVALS for t in RESUME_THRESHOLDS}
    evaluated = subprocess.run(
        [sys.executable, "-m", "stark.jobs.evaluate", "--config", "stark_tiny", "--model",
         f"runs:/{run.info.run_id}/model_tuned.pt", "--data", str(val_tree), "--split", "val", "--out",
         str(tmp_path / "eval"), "--no-mlflow", "evaluate.num_workers=0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"update_interval={best_u}, score_threshold={best_t}" in evaluated.stdout
    assert f"{best_p:.3g})" in evaluated.stdout  # evaluate's absence line names the tuned present_threshold
