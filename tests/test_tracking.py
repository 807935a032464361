"""Where training logs to: the tracking URI from config, then $MLFLOW_TRACKING_URI, then a sqlite file in the home."""
from __future__ import annotations

import pytest

from stark.platform.experiment import ConfigError, load_config
from stark.platform.mlflow_runs import MlflowConfig, resolve_tracking_uri


def test_the_config_uri_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(MlflowConfig(tracking_uri="http://mlflow:80")) == "http://mlflow:80"
    assert resolve_tracking_uri(MlflowConfig()) == "http://127.0.0.1:5000"


def test_the_embedded_default_is_an_absolute_sqlite_file_in_the_home_not_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("STARK_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(MlflowConfig()) == f"sqlite:///{tmp_path}/home/mlflow.db"
    assert resolve_tracking_uri(MlflowConfig(), home=str(tmp_path / "h2")) == f"sqlite:///{tmp_path}/h2/mlflow.db"
    # a relative sqlite path the user gives is theirs, made absolute so that Ray workers in another folder agree
    assert resolve_tracking_uri(MlflowConfig(tracking_uri="sqlite:///sub/t.db")) == f"sqlite:///{tmp_path}/sub/t.db"


def test_every_experiment_is_tagged_so_the_mlflow_ui_opens_on_its_training_runs(tmp_path):
    from stark.platform.mlflow_runs import EXPERIMENT_KIND_TAG, experiment_id, mlflow_client

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow_client(uri)
    created = experiment_id(client, "new-one", uri)
    older = client.create_experiment("older-one")  # made before the tag existed
    assert experiment_id(client, "older-one", uri) == older
    for exp in (created, older):
        assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_the_old_file_store_is_refused_at_load_time():
    with pytest.raises(ConfigError, match="mlflow.tracking_uri"):
        load_config("stark_tiny", ["mlflow.tracking_uri=./mlruns"])


def test_an_embedded_store_keeps_artifacts_beside_its_database_not_in_the_working_folder(tmp_path, monkeypatch):
    from stark.platform.mlflow_runs import JobRuns

    monkeypatch.chdir(tmp_path)
    (tmp_path / "db").mkdir()
    runs = JobRuns(f"sqlite:///{tmp_path}/db/mlflow.db", "exp", run_name="r", run_dir="/runs/r")
    assert runs.client.get_run(runs.parent_id).info.artifact_uri.startswith(f"{tmp_path}/db/mlruns/")
    again = JobRuns(f"sqlite:///{tmp_path}/db/mlflow.db", "exp", run_name="r", run_dir="/runs/r")
    assert again.resumed and again.parent_id == runs.parent_id  # the same job finds its run again
    assert not (tmp_path / "mlruns").exists()


def test_a_re_run_with_nothing_to_do_leaves_each_runs_status_and_duration_as_they_were(tmp_path):
    """`stark train` again on a finished run: the parent and stage runs keep their end time, so MLflow's
    duration stays the training's (not the training plus the wait before the re-run)."""
    import time

    from stark.platform.mlflow_runs import JobRuns

    uri = f"sqlite:///{tmp_path}/mlflow.db"

    def invocation(work: bool):
        runs = JobRuns(uri, "exp", run_name="r", run_dir="/runs/r")
        stage = runs.stage_run(1)
        if work:
            runs.resume(stage)
        runs.finish(stage)
        runs.finish(runs.parent_id)
        return {run: runs.client.get_run(run).info for run in (runs.parent_id, stage)}

    first = invocation(work=True)
    time.sleep(0.05)
    again = invocation(work=False)
    assert again.keys() == first.keys()
    for run, info in again.items():
        assert (info.status, info.start_time, info.end_time) == ("FINISHED", first[run].start_time, first[run].end_time)
    time.sleep(0.05)
    resumed = invocation(work=True)  # control: a resume that trains ends the runs now
    assert all(info.status == "FINISHED" and info.end_time > first[run].end_time for run, info in resumed.items())


def test_a_re_run_with_nothing_to_do_finishes_a_run_an_interrupted_invocation_left_failed(tmp_path):
    from stark.platform.mlflow_runs import JobRuns

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    runs = JobRuns(uri, "exp", run_name="r", run_dir="/runs/r")
    runs.finish(runs.parent_id, ok=False)  # the stage's final checkpoint was written, then the job died
    failed = runs.client.get_run(runs.parent_id).info
    again = JobRuns(uri, "exp", run_name="r", run_dir="/runs/r")
    again.finish(again.parent_id)
    info = again.client.get_run(again.parent_id).info
    assert failed.status == "FAILED" and (info.status, info.end_time) == ("FINISHED", failed.end_time)
