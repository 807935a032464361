"""One home for the platform's state (platform/home.py): the config's `home`, else $STARK_HOME, else ~/.stark;
every location left unset in a config is placed there when it is loaded, whatever the working folder."""
from __future__ import annotations

from pathlib import Path

from stark.platform.experiment import load_config
from stark.platform.home import Home, resolve_home


def test_the_config_home_wins_over_the_environment_which_wins_over_the_per_user_default(monkeypatch, tmp_path):
    monkeypatch.setenv("STARK_HOME", str(tmp_path / "env"))
    assert resolve_home(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert resolve_home(None) == tmp_path / "env"
    monkeypatch.delenv("STARK_HOME")
    assert resolve_home(None) == Path("~/.stark").expanduser().resolve()


def test_unset_locations_are_placed_in_the_home_the_same_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("STARK_HOME", str(tmp_path / "home"))
    placed = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        cfg = load_config("pipeline_demo")
        placed.append((cfg.home, cfg.train.storage_path, cfg.tune.storage_path, cfg.evaluate.output,
                       cfg.pipeline.workdir))
    home = Home(tmp_path / "home")
    assert placed[0] == placed[1] == (str(home.root), home.runs, home.tune, home.eval, home.pipeline("pipeline_demo"))


def test_a_location_given_in_the_config_is_kept_as_given(monkeypatch, tmp_path):
    monkeypatch.setenv("STARK_HOME", str(tmp_path / "home"))
    cfg = load_config("stark_tiny", ["train.storage_path=s3://bucket/runs", f"home={tmp_path / 'other'}",
                                     "evaluate.output=here"])
    assert cfg.train.storage_path == "s3://bucket/runs" and cfg.evaluate.output == "here"
    assert cfg.home == str(tmp_path / "other") and cfg.tune.storage_path == str(tmp_path / "other" / "tune")


def test_loading_a_config_and_resolving_its_store_creates_nothing_in_the_working_folder(monkeypatch, tmp_path):
    from stark.platform.mlflow_runs import experiment_id, mlflow_client, resolve_tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("STARK_HOME", str(tmp_path / "home"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    cfg = load_config("stark_tiny")
    uri = resolve_tracking_uri(cfg.mlflow, cfg.home)
    client = mlflow_client(uri)
    run = client.create_run(experiment_id(client, "x", uri))
    client.log_text(run.info.run_id, "hello", "a.txt")
    assert list((tmp_path / "cwd").iterdir()) == []
    assert (tmp_path / "home" / "mlflow.db").exists() and (tmp_path / "home" / "mlruns").is_dir()
