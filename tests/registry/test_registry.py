"""The registry through a real `mlflow server` (sqlite backend, artifacts on the local S3 endpoint):
versions carry their settings and provenance; `champion` moves only on a real win, under a lock;
rollback restores; an outage changes nothing; `models:/stark@champion` tracks a video.

Every promotion must also beat the static box (tests/registry/test_promotion.py), which a tiny model trained for a
minute need not do on generated footage; so models are promoted on `own_track_tree(model)`, a copy of the
validation sequences whose ground truth is that model's own track (it beats the static box there by
construction), and compared with the other models on the same tree."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import numpy as np
import pytest

from stark.platform.registry.promotion import decide
from stark.platform.registry.config import RegistryConfig

pytestmark = pytest.mark.slow

MODEL = "stark"


# a job whose server goes away retries once, without backoff: the specs are about what it leaves behind,
# not how long it waits (MLflow's default backoff sleeps 2-3 s a request, over 10 s a cut-off job)
FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
             "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0"}


def stark_job(*args: str, server=None, env_extra=None, timeout=600) -> subprocess.CompletedProcess:
    """`python -m <job> ARGS` in its own process: for the runs a test cuts off, kills or races."""
    env = {**os.environ, **FAIL_FAST, **(env_extra or {})}
    if server is not None:
        env["MLFLOW_TRACKING_URI"] = server.url
    return subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout)


def job_in_process(job: str, *args: str, server) -> subprocess.CompletedProcess:
    """The job's `main(ARGS)` called here, its tracking URI given as a config override: the same code and
    exit codes as the command, without a new interpreter importing torch and MLflow (~5 s a call)."""
    import importlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = importlib.import_module(f"stark.jobs.{job}").main([*args, f"mlflow.tracking_uri={server.url}"])
    return subprocess.CompletedProcess([job, *args], code, out.getvalue(), err.getvalue())


def register(server, checkpoint, *extra) -> str:
    done = job_in_process("register", "--config", "stark_tiny", "--checkpoint", str(checkpoint), *extra,
                          server=server)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("registered models:/"))
    return line.split()[1].rsplit("/", 1)[1]


def promote(server, version, data, *overrides) -> subprocess.CompletedProcess:
    return job_in_process("promote", "--config", "stark_tiny", "--candidate", f"models:/{MODEL}/{version}",
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

    back = job_in_process("rollback", "--config", "stark_tiny", server=mlflow_server)
    assert back.returncode == 0, back.stderr[-2000:]
    assert champion(mlflow_server) == weak


def aliases(server) -> tuple[str | None, str | None]:
    from stark.platform.mlflow_runs import mlflow_client
    from stark.platform.registry.versions import alias_version

    client = mlflow_client(server.url)
    return alias_version(client, MODEL, "champion"), alias_version(client, MODEL, "previous-champion")


def no_lock_or_journal_left(server) -> bool:
    from stark.platform.mlflow_runs import mlflow_client
    from stark.platform.registry.promotion import MOVING_TAG

    client = mlflow_client(server.url)
    return (client.search_registered_models(f"name LIKE '{MODEL}.promotion-lock%'") == []
            and MOVING_TAG not in client.get_registered_model(MODEL).tags)


@pytest.mark.parametrize("experiments", ["fresh", "already there"])
def test_of_two_concurrent_promotions_of_equal_models_exactly_one_wins(mlflow_server, trained_checkpoint,
                                                                       own_track_tree, experiments):
    """Two versions of the same weights, promoted at the same time: serialised, the second meets the first as
    champion and ties it (NOT PROMOTED, below the margin). Without the lock both read 'no champion' and both
    print PROMOTED, the second silently replacing the first: a lost update. On a fresh server they also race
    to create the experiments they file runs under."""
    if experiments == "already there":
        from stark.platform.mlflow_runs import EXPERIMENTS, experiment_id, mlflow_client

        for name in EXPERIMENTS.values():
            experiment_id(mlflow_client(mlflow_server.url), name, mlflow_server.url)
    a = register(mlflow_server, trained_checkpoint)
    b = register(mlflow_server, trained_checkpoint)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.url}
    command = [sys.executable, "-m", "stark.jobs.promote", "--config", "stark_tiny", "--data",
               str(own_track_tree(trained_checkpoint)), "--split", "val", "evaluate.num_workers=0"]
    both = [subprocess.Popen(command + ["--candidate", f"models:/{MODEL}/{v}"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for v in (a, b)]
    outputs = [p.communicate(timeout=900) for p in both]
    assert all(p.returncode == 0 for p in both), [o[1][-2000:] for o in outputs]

    promoted = [v for v, (out, _) in zip((a, b), outputs) if "\nPROMOTED" in out]
    assert len(promoted) == 1, [out for out, _ in outputs]  # two: a lost update
    winner, = promoted
    loser = b if winner == a else a
    assert aliases(mlflow_server) == (winner, None)
    lost = version_tags(mlflow_server, loser)
    assert lost["stark.promotion.decision"] == "rejected" and lost["stark.promotion.compared_to"] == winner
    assert version_tags(mlflow_server, winner)["stark.promotion.compared_to"] == "none"
    assert no_lock_or_journal_left(mlflow_server)


def promote_through(url: str, version, data, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, **FAIL_FAST, "MLFLOW_TRACKING_URI": url, "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    return subprocess.run([sys.executable, "-m", "stark.jobs.promote", "--config", "stark_tiny", "--candidate",
                           f"models:/{MODEL}/{version}", "--data", str(data), "--split", "val",
                           "evaluate.num_workers=0"], env=env, capture_output=True, text=True, timeout=timeout)


def test_a_server_outage_mid_promotion_leaves_the_alias_unchanged_and_the_next_promotion_runs(
        mlflow_server, trained_checkpoint, random_checkpoint, own_track_tree):
    weak_data = own_track_tree(random_checkpoint)
    weak = register(mlflow_server, random_checkpoint)
    assert promote(mlflow_server, weak, weak_data).returncode == 0 and champion(mlflow_server) == weak
    strong = register(mlflow_server, trained_checkpoint)
    env = {**os.environ, **FAIL_FAST, "MLFLOW_TRACKING_URI": mlflow_server.url,
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

    # its lock is still there, its holder gone: the next promotion takes it at once, not after a lease
    again = promote(mlflow_server, strong, own_track_tree(trained_checkpoint))
    assert again.returncode == 0 and "\nPROMOTED" in again.stdout, again.stdout + again.stderr[-2000:]
    assert "breaking" in again.stdout
    assert aliases(mlflow_server) == (strong, weak) and no_lock_or_journal_left(mlflow_server)


ALIAS = "/api/2.0/mlflow/registered-models/alias"
# where the server goes away during the alias writes of a promotion from (weak, none) to (strong, weak)
CUTS = {
    "champion moved, previous-champion not yet": lambda method, path, n: (method, path) == ("POST", ALIAS) and n == 1,
    "both moved, the journal not yet cleared": lambda method, path, n: (
        method == "DELETE" and path == "/api/2.0/mlflow/registered-models/delete-tag"),
}


@pytest.mark.parametrize("cut", list(CUTS))
def test_a_promotion_cut_off_between_its_alias_writes_is_undone_by_the_next_one(
        mlflow_server, trained_checkpoint, random_checkpoint, own_track_tree, cut):
    from tests.support.http_cut import HttpCut

    weak = register(mlflow_server, random_checkpoint)
    assert promote(mlflow_server, weak, own_track_tree(random_checkpoint)).returncode == 0
    strong = register(mlflow_server, trained_checkpoint)
    proxy = HttpCut(mlflow_server.url, CUTS[cut])
    try:
        cut_off = promote_through(proxy.url, strong, own_track_tree(trained_checkpoint))
    finally:
        proxy.close()
    assert proxy.down, "the cut never came"
    assert cut_off.returncode == 1 and "puts them back" in cut_off.stderr, cut_off.stdout + cut_off.stderr[-2000:]

    # the server is back (it never left; the way to it did): the next promotion undoes the cut-off move,
    # breaks the lock its dead holder left, and promotes on the same evidence
    again = promote(mlflow_server, strong, own_track_tree(trained_checkpoint))
    assert again.returncode == 0 and "\nPROMOTED" in again.stdout, again.stdout + again.stderr[-2000:]
    assert "was cut off" in again.stdout and "breaking" in again.stdout
    assert aliases(mlflow_server) == (strong, weak) and no_lock_or_journal_left(mlflow_server)
    assert version_tags(mlflow_server, strong)["stark.promotion.decision"] == "promoted"


def test_a_rollback_cut_off_between_its_alias_writes_is_undone_by_the_next_rollback(
        mlflow_server, trained_checkpoint, random_checkpoint, own_track_tree):
    from tests.support.http_cut import HttpCut

    weak = register(mlflow_server, random_checkpoint)
    assert promote(mlflow_server, weak, own_track_tree(random_checkpoint)).returncode == 0
    strong = register(mlflow_server, trained_checkpoint)
    assert promote(mlflow_server, strong, own_track_tree(trained_checkpoint)).returncode == 0
    assert aliases(mlflow_server) == (strong, weak)
    proxy = HttpCut(mlflow_server.url, CUTS["champion moved, previous-champion not yet"])
    try:
        cut_off = stark_job("stark.jobs.rollback", "--config", "stark_tiny",
                            env_extra={"MLFLOW_TRACKING_URI": proxy.url, "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"})
    finally:
        proxy.close()
    assert proxy.down and cut_off.returncode == 1 and "puts them back" in cut_off.stderr, cut_off.stderr[-2000:]

    back = job_in_process("rollback", "--config", "stark_tiny", server=mlflow_server)
    assert back.returncode == 0, back.stderr[-2000:]
    assert "was cut off" in back.stdout and "breaking" in back.stdout, back.stdout
    assert aliases(mlflow_server) == (weak, strong) and no_lock_or_journal_left(mlflow_server)


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
