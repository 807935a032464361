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
