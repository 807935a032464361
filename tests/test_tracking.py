"""Where training logs to: the tracking URI from config, then $MLFLOW_TRACKING_URI, then a sqlite file."""
from __future__ import annotations

import pytest

from stark.platform.experiment import ConfigError, load_config
from stark.platform.mlflow_runs import MlflowConfig, resolve_tracking_uri


def test_the_config_uri_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(MlflowConfig(tracking_uri="http://mlflow:80")) == "http://mlflow:80"
    assert resolve_tracking_uri(MlflowConfig()) == "http://127.0.0.1:5000"


def test_the_embedded_default_is_an_absolute_sqlite_file_in_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    # absolute, so that Ray workers running in another folder write to the same database
    assert resolve_tracking_uri(MlflowConfig()) == f"sqlite:///{tmp_path}/mlflow.db"
    assert resolve_tracking_uri(MlflowConfig(tracking_uri="sqlite:///sub/t.db")) == f"sqlite:///{tmp_path}/sub/t.db"


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
