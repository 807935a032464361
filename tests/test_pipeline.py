"""`stark pipeline` end to end on embedded defaults (smaller than the README's run so CI stays short):
every step runs, the summary compares with the static-box baseline, and a re-run, from the same folder or
another, is a fast no-op that prints the same summary; `stark evaluate` and `stark track` from another folder
find its champion. Its state is in the home, never the working folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

# train.init_from=null: the specification does not hang on the shipped starter fitting the current network.
# tracker.redetect_after=0: a network trained for 8 steps is never sure, so re-detection would search 16
# windows on every frame of every step that tracks (tests/track/test_redetection.py specifies re-detection)
SMALL = ["tracker.redetect_after=0", "pipeline.demo_train_sequences=4", "pipeline.demo_val_sequences=3",
         "pipeline.demo_promote_sequences=3", "pipeline.demo_frames=30", "pipeline.demo_video_frames=40",
         "pipeline.demo_size=[240,136]", "train.init_from=null", "data.samples_per_epoch=64", "train.batch_size=8",
         "train.stage1.epochs=1", "train.stage2.epochs=1", "train.checkpoint_every_steps=4",
         "tune.update_intervals=[5,10]", "tune.score_thresholds=[0.4,0.6]"]


def run_job(home, cwd, job: str, *args: str) -> subprocess.CompletedProcess:
    """`stark JOB ARGS` as a user runs it: in `cwd`, the home from $STARK_HOME, no MLflow or Ray address set."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "STARK_LOG_DIR")}
    env["STARK_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", f"stark.jobs.{job}", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=1500)


def run_pipeline(home, cwd, *extra: str) -> subprocess.CompletedProcess:
    return run_job(home, cwd, "pipeline", *SMALL, *extra)


def summary_table(stdout: str) -> list[str]:
    """The summary's lines: from the sequences line to the MLflow line."""
    lines = stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "unseen in training" in line)
    return lines[first:]


def test_the_main_job_runs_every_step_then_is_a_no_op_from_any_folder(tmp_path):
    home, first_folder, second_folder = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    first_folder.mkdir()
    second_folder.mkdir()
    first = run_pipeline(home, first_folder)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for step in ("data", "ingest", "train", "tune", "register", "promote", "track"):
        assert f"] {step}:" in first.stdout
    assert "static box (first frame)" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout
    assert len((first.stdout + first.stderr).splitlines()) < 150  # the job's own lines, not Ray's
    workdir = home / "pipelines" / "pipeline_demo"
    summary = json.loads((workdir / "summary.json").read_text())
    assert set(summary["stark"]) >= {"ao", "sr50"} and set(summary["static_box"]) >= {"ao", "sr50"}
    assert (workdir / "track" / "tracked.mp4").stat().st_size > 0
    assert (workdir / "clips" / "manifest.parquet").exists()
    assert (home / "logs" / "pipeline.log").stat().st_size > 0  # where Ray's and MLflow's lines went
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home}/mlflow.db")
    versions = client.search_model_versions("name = 'stark'")
    assert len(versions) == 1 and "stark.promotion.decision" in versions[0].tags
    assert versions[0].description == "registered by stark pipeline"

    for folder in (first_folder, second_folder):
        started = time.monotonic()
        again = run_pipeline(home, folder)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert time.monotonic() - started < 90  # a no-op: no Ray, no training, no tracking
        assert again.stdout.count("skipped") >= 6  # data, ingest, train, tune, register, promote, track
        assert "nothing to do" in again.stdout
        assert summary_table(again.stdout) == summary_table(first.stdout)
    assert len(client.search_model_versions("name = 'stark'")) == 1

    # the champion from another folder, as the README's commands name it (evaluate in-process: no Ray to start).
    # This small model, trained from random weights, may not beat the static box: then no promotion named a
    # champion, and version 1 is named one here as a promotion would
    if "champion" not in client.get_model_version("stark", versions[0].version).aliases:
        client.set_registered_model_alias("stark", "champion", versions[0].version)
    evaluated = run_job(home, second_folder, "evaluate", "--model", "models:/stark@champion", "--data",
                        str(workdir / "clips-holdout"), "--split", "val", "evaluate.num_workers=0")
    assert evaluated.returncode == 0, evaluated.stdout[-3000:] + evaluated.stderr[-3000:]
    assert "ao=" in evaluated.stdout and f"{home}/eval/stark@champion-" in evaluated.stdout
    box = re.search(r"stark track \S+ --box (\S+)", first.stdout).group(1)  # the demo video's first box
    tracked = run_job(home, second_folder, "track", str(workdir / "demo_video.mp4"), "--box", box)
    assert tracked.returncode == 0, tracked.stdout[-3000:] + tracked.stderr[-3000:]
    assert "with mlflow model models:/stark@champion" in tracked.stdout
    assert f"{home}/track/stark@champion-" in tracked.stdout
    for folder in (first_folder, second_folder):
        assert list(folder.iterdir()) == []  # no mlflow.db, no mlruns/, no <video>-track, nothing


def test_steps_before_training_finish_cleanly_without_a_summary(tmp_path):
    workdir = tmp_path / "work"
    done = run_pipeline(tmp_path / "home", tmp_path, f"pipeline.workdir={workdir}", "pipeline.steps=[data,ingest]")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no trained model yet" in done.stdout
    # each split from its own photographs: tuning and promotion never see training's scenes
    for manifest in ("clips", "clips-holdout"):
        assert (workdir / manifest / "manifest.parquet").exists()
