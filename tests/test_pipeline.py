"""`stark pipeline` end to end on embedded defaults (smaller than the README's run so CI stays short):
every step runs, the summary compares with the static-box baseline, and a re-run resumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SMALL = ["pipeline.demo_train_sequences=4", "pipeline.demo_val_sequences=3", "pipeline.demo_promote_sequences=3",
         "pipeline.demo_frames=30", "pipeline.demo_size=[240,136]",
         "data.samples_per_epoch=160", "train.stage1.epochs=1", "train.stage2.epochs=1",
         "train.checkpoint_every_steps=10", "tune.update_intervals=[5,10]", "tune.score_thresholds=[0.4,0.6]"]


def run_pipeline(workdir, tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    return subprocess.run([sys.executable, "-m", "stark.jobs.pipeline", f"pipeline.workdir={workdir}", *SMALL],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)


def test_the_main_job_runs_every_step_and_resumes(tmp_path):
    workdir = tmp_path / "work"
    first = run_pipeline(workdir, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for step in ("data", "ingest", "train", "tune", "register", "promote", "track"):
        assert f"] {step}:" in first.stdout
    assert "static box (first frame)" in first.stdout and "mlflow ui --backend-store-uri" in first.stdout

    summary = json.loads((workdir / "summary.json").read_text())
    assert set(summary["stark"]) >= {"ao", "sr50"} and set(summary["static_box"]) >= {"ao", "sr50"}
    assert (workdir / "track" / "tracked.mp4").stat().st_size > 0
    assert (workdir / "clips" / "manifest.parquet").exists()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    versions = client.search_model_versions("name = 'stark'")
    assert len(versions) == 1 and "stark.promotion.decision" in versions[0].tags

    again = run_pipeline(workdir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipped") >= 5  # data, ingest, tune, register, promote, track
    assert len(client.search_model_versions("name = 'stark'")) == 1


def test_steps_before_training_finish_cleanly_without_a_summary(tmp_path):
    workdir = tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    done = subprocess.run([sys.executable, "-m", "stark.jobs.pipeline", f"pipeline.workdir={workdir}", *SMALL,
                           "pipeline.steps=[data,ingest]"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "no trained model yet" in done.stdout
    # each split from its own photographs: tuning and promotion never see training's scenes
    for manifest in ("clips", "clips-holdout"):
        assert (workdir / manifest / "manifest.parquet").exists()
