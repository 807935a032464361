"""The registry through a real `mlflow server` (sqlite backend, artifacts on the local S3 endpoint):
versions carry their settings and provenance; `champion` moves only on a real win, under a lock;
rollback restores; an outage changes nothing; `models:/stark@champion` tracks a video.

Every promotion must also beat the static box (tests/registry/test_promotion.py), which a tiny model trained for a
minute need not do on generated footage; so models are promoted on `own_track_tree(model)`, a copy of the
validation sequences whose ground truth is that model's own track (it beats the static box there by
construction), and compared with the other models on the same tree."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from stark.platform.registry.promotion import decide
from stark.platform.registry.config import RegistryConfig

pytestmark = pytest.mark.slow

MODEL = "stark"


def stark_job(*args: str, server=None, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    if server is not None:
        env["MLFLOW_TRACKING_URI"] = server.url
    env.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout)


def register(server, checkpoint, *extra) -> str:
    done = stark_job("stark.jobs.register", "--config", "stark_tiny", "--checkpoint", str(checkpoint), *extra,
                     server=server)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("registered models:/"))
    return line.split()[1].rsplit("/", 1)[1]


def promote(server, version, data, *overrides) -> subprocess.CompletedProcess:
    return stark_job("stark.jobs.promote", "--config", "stark_tiny", "--candidate", f"models:/{MODEL}/{version}",
                     "--data", str(data), "--split", "val", "evaluate.num_workers=0", *overrides, server=server)


def champion(server) -> str | None:
    from stark.platform.mlflow_runs import mlflow_client
    from stark.platform.registry.versions import alias_version

    return alias_version(mlflow_client(server.url), MODEL, "champion")


def version_tags(server, version) -> dict:
    from stark.platform.mlflow_runs import mlflow_client

    return mlflow_client(server.url).get_model_version(MODEL, version).tags


# --- the decision rule on its own -----------------------------------------------------------------------
def test_a_noisy_slight_win_below_the_margin_is_not_promoted():
    rng = np.random.default_rng(0)
    champion_scores = {f"s{i}": float(v) for i, v in enumerate(rng.uniform(0.4, 0.8, 30))}
    candidate = {k: v + 0.004 + rng.normal(0, 0.05) for k, v in champion_scores.items()}
    decision = decide(candidate, champion_scores, RegistryConfig(margin=0.02), "ao", "1")
    assert not decision.promote and "margin" in decision.reason


def test_a_large_but_inconsistent_win_is_not_significant():
    champion_scores = {f"s{i}": 0.5 for i in range(6)}
    candidate = {**champion_scores, "s0": 1.0, "s1": 0.3}  # +0.5 on one, -0.2 on another: mean +0.05
    decision = decide(candidate, champion_scores, RegistryConfig(margin=0.01), "ao", "1")
    assert not decision.promote and "not significant" in decision.reason


def test_a_consistent_win_above_the_margin_is_promoted():
    champion_scores = {f"s{i}": 0.4 + 0.01 * i for i in range(10)}
    candidate = {k: v + 0.1 for k, v in champion_scores.items()}
    decision = decide(candidate, champion_scores, RegistryConfig(margin=0.05), "ao", "1")
    assert decision.promote and decision.p_value == 0.0 and decision.ci_low > 0


def track_champion_video(server, tmp_path) -> None:
    from stark.platform.ingest.synthetic import encode_video_file, make_sequences

    seq = make_sequences(["clip"], 10, (160, 120), seed=9)[0]
    encode_video_file(str(tmp_path / "clip.mp4"), seq.frames, 25.0)
    done = stark_job("stark.jobs.track", str(tmp_path / "clip.mp4"), "--box",
                     ",".join(f"{v:g}" for v in seq.boxes_xywh[0]), "--config", "stark_tiny", "--out",
                     str(tmp_path / "out"), server=server)  # no --model: models:/stark@champion
    assert done.returncode == 0, done.stderr[-2000:]
    assert "models:/stark@champion" in done.stdout
    assert len((tmp_path / "out" / "boxes.csv").read_text().splitlines()) == 11


# --- through the server -------------------------------------------------------------------------------
def test_first_model_then_a_clearly_better_one_then_a_worse_and_an_equal_one_then_the_champion_tracks(
        mlflow_server, val_tree, trained_checkpoint, random_checkpoint, own_track_tree, tmp_path):
    weak = register(mlflow_server, random_checkpoint)
    tags = version_tags(mlflow_server, weak)
    assert tags["stark.variant"] == "ST" and "stark.tracker" in tags and "stark.model_config" in tags

    first = promote(mlflow_server, weak, own_track_tree(random_checkpoint))
    assert first.returncode == 0 and "PROMOTED" in first.stdout, first.stderr[-2000:]
    assert "static box" in first.stdout  # the baseline a first model had to beat
    assert champion(mlflow_server) == weak

    strong = register(mlflow_server, trained_checkpoint, "--eval-data", str(val_tree), "--split", "val",
                      "evaluate.num_workers=0")
    assert float(version_tags(mlflow_server, strong)["stark.eval.ao"]) > 0
    strong_data = own_track_tree(trained_checkpoint)
    better = promote(mlflow_server, strong, strong_data)
    assert better.returncode == 0 and "\nPROMOTED" in better.stdout, better.stdout + better.stderr[-2000:]
    assert champion(mlflow_server) == strong
    recorded = version_tags(mlflow_server, strong)
    assert recorded["stark.promotion.decision"] == "promoted"
    assert recorded["stark.promotion.compared_to"] == weak and float(recorded["stark.promotion.p_value"]) < 0.05

    worse = register(mlflow_server, random_checkpoint)
    refused = promote(mlflow_server, worse, strong_data)
    assert refused.returncode == 0 and "NOT PROMOTED" in refused.stdout
    assert "reusing evaluation" in refused.stdout  # the champion's stored evaluation on the same data
    equal = register(mlflow_server, trained_checkpoint)
    tie = promote(mlflow_server, equal, strong_data)
    assert "NOT PROMOTED" in tie.stdout and "below the margin" in tie.stdout
    assert champion(mlflow_server) == strong
    assert version_tags(mlflow_server, equal)["stark.promotion.decision"] == "rejected"

    track_champion_video(mlflow_server, tmp_path)  # `stark track` without --model tracks with the champion

    back = stark_job("stark.jobs.rollback", "--config", "stark_tiny", server=mlflow_server)
    assert back.returncode == 0, back.stderr[-2000:]
    assert champion(mlflow_server) == weak


def test_two_concurrent_promotions_leave_one_consistent_champion(mlflow_server, trained_checkpoint,
                                                               random_checkpoint, own_track_tree):
    a = register(mlflow_server, random_checkpoint)
    b = register(mlflow_server, trained_checkpoint)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    command = [sys.executable, "-m", "stark.jobs.promote", "--config", "stark_tiny", "--data",
               str(own_track_tree(trained_checkpoint)), "--split", "val", "evaluate.num_workers=0"]
    both = [subprocess.Popen(command + ["--candidate", f"models:/{MODEL}/{v}"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for v in (a, b)]
    outputs = [p.communicate(timeout=600) for p in both]
    assert all(p.returncode == 0 for p in both), [o[1][-2000:] for o in outputs]

    final = champion(mlflow_server)
    assert final in (a, b)
    tags = version_tags(mlflow_server, final)
    assert tags["stark.promotion.decision"] == "promoted"
    from stark.platform.mlflow_runs import mlflow_client
    from stark.platform.registry.versions import alias_version

    previous = alias_version(mlflow_client(mlflow_server.url), MODEL, "previous-champion")
    # the champion won against exactly the model it replaced (none if it was promoted first)
    assert tags["stark.promotion.compared_to"] == (previous or "none")
    assert mlflow_client(mlflow_server.url).search_registered_models(f"name = '{MODEL}.promotion-lock'") == []


def test_a_server_outage_mid_promotion_leaves_the_alias_unchanged(mlflow_server, trained_checkpoint,
                                                                 random_checkpoint, own_track_tree):
    weak_data = own_track_tree(random_checkpoint)
    weak = register(mlflow_server, random_checkpoint)
    assert promote(mlflow_server, weak, weak_data).returncode == 0 and champion(mlflow_server) == weak
    strong = register(mlflow_server, trained_checkpoint)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
           "PYTHONUNBUFFERED": "1"}  # its progress lines arrive as they are printed
    running = subprocess.Popen([sys.executable, "-m", "stark.jobs.promote", "--config", "stark_tiny", "--candidate",
                                f"models:/{MODEL}/{strong}", "--data", str(weak_data), "--split", "val",
                                "evaluate.num_workers=0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    for line in running.stdout:  # the candidate is being evaluated: take the server away now
        if "evaluating on" in line:
            break
    mlflow_server.stop()
    out, err = running.communicate(timeout=600)
    assert running.returncode != 0 and mlflow_server.url in err and "error:" in err, out + err[-2000:]
    mlflow_server.start()
    assert champion(mlflow_server) == weak


def test_a_registered_version_keeps_its_description_and_loads_from_any_folder_by_its_uri(tmp_path, monkeypatch,
                                                                                           random_checkpoint):
    import mlflow

    from stark.platform.model_loading import load_model
    from stark.platform.registry.versions import register_checkpoint

    uri = f"sqlite:///{tmp_path}/home/mlflow.db"
    (tmp_path / "home").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    before = mlflow.get_tracking_uri()
    version = register_checkpoint(str(random_checkpoint), {}, "stark", uri, {"stark.variant": "ST"},
                                  "fine-tuned on the demo data")
    assert version.description == "fine-tuned on the demo data" and version.tags["stark.variant"] == "ST"
    loaded = load_model("models:/stark/1", tracking_uri=uri)
    assert loaded.kind == "mlflow" and loaded.model_cfg.variant == "ST"
    assert mlflow.get_tracking_uri() == before  # nothing process-wide was set
    assert list((tmp_path / "elsewhere").iterdir()) == []  # and nothing landed in the working folder
