"""`stark train` end to end: real local Ray (2 Ray Train workers, CPU, gloo), data ingested here with
`stark ingest` and streamed through Ray Data, MLflow on a sqlite file, the tiny preset.

Fast cases check that a bad config or a missing manifest fails before any worker starts; the slow
ones train (a full two-stage run shared by several checks, a run whose worker is SIGKILLed, and a job
whose driver is SIGKILLed and then run again).
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from stark.jobs.train import main as train_main

WORKER_TITLE = "RayTrainWorker"  # in the process title of every Ray Train worker


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_address():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # 2 training workers + 1 decode actor (+ headroom for a restarted group) on a 2-core machine
    ray.init(num_cpus=4, include_dashboard=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory, ray_address) -> str:
    """Four synthetic GOT-10k sequences, ingested with the real `stark ingest` into clips + manifest."""
    from stark.jobs.ingest import main as ingest_main
    from stark.platform.ingest.synthetic import write_demo_dataset

    root = tmp_path_factory.mktemp("train-data")
    write_demo_dataset(str(root / "src"), "got10k", num_sequences=4, num_frames=40, size=(160, 120), seed=0)
    with contextlib.redirect_stdout(io.StringIO()):
        assert ingest_main([str(root / "src"), str(root / "data"), "ingest.preset=ultrafast"]) == 0
    return str(root / "data")


def job_args(folder: Path, manifest: str, *extra: str, storage_path: str | None = None) -> list[str]:
    """The tiny preset shrunk to seconds: 64 samples per epoch, 2 workers x batch 4 = 8 steps an epoch."""
    return ["--config", "stark_tiny", f"data.manifests=[{manifest}]", "data.samples_per_epoch=64",
            "data.decode_actors=1", "train.num_workers=2", "train.batch_size=4",
            "train.lr=1.0e-3", "train.log_every_steps=2", "train.checkpoint_every_steps=4",
            f"train.storage_path={storage_path or folder / 'runs'}",
            f"mlflow.tracking_uri=sqlite:///{folder / 'mlflow.db'}", "mlflow.experiment=train-tests", *extra]


def run_job(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train_main(args)
    return code, out.getvalue(), err.getvalue()


def mlflow_client(folder: Path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def job_runs(folder: Path) -> tuple[object, dict]:
    """(parent run, {stage: stage run}) of the one training job in the folder's MLflow store."""
    client = mlflow_client(folder)
    experiment = client.get_experiment_by_name("train-tests")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stark.kind") == "train"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    stages = {int(r.data.tags["stark.stage"]): r for r in runs if r.data.tags.get("stark.kind") == "train-stage"}
    return parents[0], stages


def history(folder: Path, run, key: str) -> list:
    return sorted(mlflow_client(folder).get_metric_history(run.info.run_id, key), key=lambda m: (m.timestamp, m.step))


def stage_dir(folder: Path, stage: int) -> Path:
    return folder / "runs" / "stark_tiny" / f"stage{stage}"


def registered_step(folder: Path | str, stage: int) -> int:
    """Step of the stage's latest checkpoint registered with Ray Train (0 before the first); `folder` is
    the test folder (storage in <folder>/runs) or an s3:// storage path."""
    from stark.platform.train.run_layout import latest_result

    where = f"{folder}/stark_tiny/stage{stage}" if str(folder).startswith("s3://") else str(stage_dir(folder, stage))
    result = latest_result(where, None)
    return int(result.metrics["step"]) if result else 0


def descendant_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def train_worker_pids() -> list[int]:
    """Ray Train worker processes of this test's Ray cluster (they descend from this process)."""
    pids = []
    for pid in descendant_pids(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if WORKER_TITLE in title:
            pids.append(pid)
    return pids


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# --- fails before any worker starts ---------------------------------------------------------------
def test_a_bad_config_key_fails_before_any_worker_starts_naming_the_key(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train_main(job_args(tmp_path, str(tmp_path / "data"), "train.stage1.epochz=3"))
    assert exit_info.value.code == 2
    assert "train.stage1.epochz" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_manifest_that_does_not_exist_fails_before_any_worker_starts_naming_the_uri(tmp_path):
    missing = str(tmp_path / "no-such-ingest")
    code, _, err = run_job(job_args(tmp_path, missing))
    assert code == 2
    assert missing in err and "data.manifests" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_stage_two_alone_needs_stage_one_weights_before_any_worker_starts(tmp_path, manifest):
    code, _, err = run_job(job_args(tmp_path, manifest, "train.stages=[2]"))
    assert code == 2 and str(stage_dir(tmp_path, 1) / "final.pt") in err and "train.init_from" in err
    assert not (tmp_path / "runs").exists()


def test_resuming_a_run_folder_with_another_model_fails_naming_the_changed_key(tmp_path, manifest):
    run_dir = tmp_path / "runs" / "stark_tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model:\n  transformer:\n    d_model: 32\n")
    code, _, err = run_job(job_args(tmp_path, manifest))
    assert code == 2 and "model.transformer.d_model" in err and str(run_dir) in err
    assert not (run_dir / "stage1").exists()


# --- the stage stream -----------------------------------------------------------------------------
def test_the_stage_stream_continues_across_epochs_sample_for_sample_as_the_epoch_streams(manifest):
    """Stream samples [6, 12) with 8 per epoch = epoch 0's samples 6-7, then epoch 1's samples 0-3,
    identical to what `build_training_stream` makes for those epochs."""
    import ray

    from stark.platform.experiment import load_config
    from stark.platform.data.stream import build_training_stream
    from stark.platform.data.frame_index import load_frame_index
    from stark.platform.train.stream import build_stage_stream

    cfg = load_config("stark_tiny", ["data.samples_per_epoch=8", "data.decode_actors=1"])
    index = load_frame_index([manifest], cfg.data, cfg.model.num_templates)

    def rows(ds) -> dict[str, torch.Tensor]:
        return next(iter(ds.iter_torch_batches(batch_size=64)))

    stage = rows(build_stage_stream(ray.put(index), cfg.data, cfg.model, 1, 0, start_sample=6, end_sample=12))
    epoch0, epoch1 = (rows(build_training_stream(index, cfg.data, cfg.model, 1, epoch, 0)) for epoch in (0, 1))
    assert stage["epoch"].tolist() == [0, 0, 1, 1, 1, 1]
    assert stage["sample_index"].tolist() == [6, 7, 0, 1, 2, 3]
    for key in ("template", "template_mask", "search", "search_mask", "search_box", "label"):
        assert torch.equal(stage[key], torch.cat([epoch0[key][6:8], epoch1[key][0:4]])), key


# --- one full two-stage run, checked several ways -------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, manifest):
    folder = tmp_path_factory.mktemp("train-run")
    # no search jitter: the target sits in the middle of every search crop, so 32 steps visibly learn
    args = job_args(folder, manifest, "train.stages=[1, 2]", "train.stage1.epochs=4", "train.stage1.lr_drop_epoch=3",
                    "train.stage2.epochs=2", "train.stage2.lr_drop_epoch=1", "data.search_center_jitter=0.0",
                    "data.search_scale_jitter=0.0")
    code, out, err = run_job(args)
    assert code == 0, out + err
    return folder, args, out


@pytest.mark.slow
def test_the_loss_goes_down_over_a_short_run(trained):
    folder, _, _ = trained
    _, stages = job_runs(folder)
    losses = [m.value for m in history(folder, stages[1], "loss")]
    assert len(losses) == 16  # 32 steps, each value the mean over 2
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.7 * first, losses


@pytest.mark.slow
def test_stage_two_leaves_every_non_score_head_parameter_bit_identical(trained):
    folder, _, _ = trained
    stage1 = torch.load(stage_dir(folder, 1) / "final.pt", weights_only=True)["model"]
    stage2 = torch.load(stage_dir(folder, 2) / "final.pt", weights_only=True)["model"]
    assert stage1.keys() == stage2.keys()
    changed = {k for k in stage1 if not torch.equal(stage1[k], stage2[k])}
    assert changed and all(k.startswith("score_head.") for k in changed), changed
    # ... parameters and buffers alike (the corner head's BatchNorm statistics stay as stage 1 left them)
    assert all(torch.equal(stage1[k], stage2[k]) for k in stage1 if not k.startswith("score_head."))


@pytest.mark.slow
def test_mlflow_holds_the_params_metrics_and_checkpoint_of_the_run(trained):
    from stark.platform.model_loading import load_model

    folder, _, _ = trained
    parent, stages = job_runs(folder)
    assert parent.info.status == "FINISHED" and set(stages) == {1, 2}
    params = parent.data.params
    assert params["train.num_workers"] == "2" and params["model.transformer.d_model"] == "128"  # stark_tiny
    assert params["train.stages"] == "[1, 2]" and params["data.samples_per_epoch"] == "64"
    for stage, terms in ((1, ("loss", "l1", "giou", "iou")), (2, ("loss", "bce", "accuracy"))):
        run = stages[stage]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for key in (*terms, "lr", "samples_per_s", "data_wait_fraction"):
            assert history(folder, run, key), f"stage {stage}: no {key} curve"
    lrs = [m.value for m in history(folder, stages[1], "lr")]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-4)  # dropped after epoch 3
    assert [m.value for m in history(folder, stages[1], "lr_backbone")][0] == pytest.approx(1e-3 * 0.5)  # x multiplier

    client = mlflow_client(folder)
    assert [a.path for a in client.list_artifacts(parent.info.run_id)] == ["config.yaml"]
    assert stages[2].info.artifact_uri.startswith(str(folder / "mlruns"))  # beside the sqlite file
    loaded = load_model(f"runs:/{stages[2].info.run_id}/checkpoint", tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    final = torch.load(stage_dir(folder, 2) / "final.pt", weights_only=True)
    assert loaded.kind == "mlflow" and loaded.checkpoint["stage"] == 2
    assert all(torch.equal(v, final["model"][k]) for k, v in loaded.model.state_dict().items())


@pytest.mark.slow
def test_the_job_ends_with_a_summary_of_stages_steps_losses_and_locations(trained):
    folder, _, out = trained
    parent, _ = job_runs(folder)
    summary = out[out.index("train: done"):]
    assert "stage 1: steps 0 -> 32 of 32" in summary and "stage 2: steps 0 -> 16 of 16" in summary
    assert "loss" in summary and "giou" in summary and "bce" in summary
    assert str(stage_dir(folder, 1) / "final.pt") in summary and str(stage_dir(folder, 2) / "final.pt") in summary
    assert parent.info.run_id in summary and str(folder / "mlflow.db") in summary


@pytest.mark.slow
def test_running_a_finished_job_again_changes_nothing_and_keeps_one_mlflow_run(trained):
    folder, args, _ = trained

    def run_times() -> list[tuple]:
        parent, stages = job_runs(folder)  # exactly one parent run
        return [(r.info.run_id, r.info.status, r.info.start_time, r.info.end_time) for r in (parent, *stages.values())]

    before = sorted(p.name for p in stage_dir(folder, 1).iterdir())
    runs_before = run_times()
    code, out, err = run_job(args)
    assert code == 0, out + err
    assert "stage 1: already complete" in out and "stage 2: already complete" in out
    assert sorted(p.name for p in stage_dir(folder, 1).iterdir()) == before
    # the same runs, still FINISHED, their durations those of the training (not stretched to this re-run)
    assert run_times() == runs_before and {status for _, status, _, _ in runs_before} == {"FINISHED"}


# --- failures -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_killing_a_worker_mid_stage_resumes_from_the_last_checkpoint(tmp_path, manifest):
    """SIGKILL one Ray Train worker after the first checkpoint: Ray Train replaces the worker group, which
    resumes from the latest checkpoint; the run completes and its step counter never restarts at 0."""
    args = job_args(tmp_path, manifest, "train.stages=[1]", "train.stage1.epochs=2", "train.max_failures=2")
    outcome: dict = {}
    job = threading.Thread(target=lambda: outcome.update(zip(("code", "out", "err"), run_job(args))))
    job.start()
    try:
        wait_for(lambda: registered_step(tmp_path, 1) >= 4, 240, "the first checkpoint")
        victims = wait_for(train_worker_pids, 30, "the Ray Train worker processes")
        killed_at = registered_step(tmp_path, 1)
        os.kill(victims[-1], signal.SIGKILL)
    finally:
        job.join(timeout=600)
    assert outcome.get("code") == 0, outcome
    assert killed_at < 16  # really mid-stage

    _, stages = job_runs(tmp_path)
    resumed = history(tmp_path, stages[1], "resumed_from_step")
    assert len(resumed) == 1 and killed_at <= resumed[0].value < 16, resumed  # a checkpoint, not step 0
    after = [m.step for m in history(tmp_path, stages[1], "loss") if m.timestamp >= resumed[0].timestamp]
    assert after[0] == resumed[0].value + 2  # the first logging step after that checkpoint
    assert after[-1] == 16 and registered_step(tmp_path, 1) == 16
    final = torch.load(stage_dir(tmp_path, 1) / "final.pt", weights_only=True)
    assert final["step"] == 16 and final["sampler"]["samples_seen"] == 128


@pytest.mark.slow
def test_a_second_invocation_of_the_same_command_resumes_where_the_first_stopped(tmp_path, manifest, ray_address,
                                                                                 s3_bucket):
    """The first job's driver is SIGKILLed mid-stage (its trainer and workers die with it); the same
    command run again continues from the latest checkpoint, in the same MLflow run. The run is stored
    on S3 (a real S3 server process on 127.0.0.1), as on a cluster."""
    runs = f"{s3_bucket}/runs"
    args = job_args(tmp_path, manifest, "train.stages=[1]", "train.stage1.epochs=2", storage_path=runs)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen([sys.executable, "-m", "stark.jobs.train", *args], env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: registered_step(runs, 1) >= 4 or first.poll() is not None, 240,
                     "the first checkpoint")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
    stopped_at = registered_step(runs, 1)
    assert 4 <= stopped_at < 16, (tmp_path / "first.log").read_text()[-3000:]
    wait_for(lambda: not train_worker_pids(), 60, "the first job's workers to exit")

    code, out, err = run_job(args)
    assert code == 0, out + err
    assert f"stage 1 resumes at step {stopped_at}" in out and f"stage 1: steps {stopped_at} -> 16 of 16" in out
    parent, stages = job_runs(tmp_path)  # one parent run for both invocations
    assert [m.value for m in history(tmp_path, stages[1], "resumed_from_step")] == [stopped_at]
    assert min(m.step for m in history(tmp_path, stages[1], "loss")) == 2
    from stark.platform.model_loading import load_model

    assert registered_step(runs, 1) == 16
    assert load_model(f"{runs}/stark_tiny/stage1/final.pt").checkpoint["step"] == 16


# --- an outage of the S3 endpoint during training -------------------------------------------------
@pytest.fixture(scope="module")
def s3_manifest(s3_endpoint, manifest, tmp_path_factory) -> str:
    """The same four sequences ingested to S3 (so the stream reads its clips from the endpoint too)."""
    import boto3

    from stark.platform.ingest.config import IngestConfig
    from stark.platform.ingest.run import ingest

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="train-outage")
    source = str(Path(manifest).parent / "src")
    ingest(source, "s3://train-outage/data", IngestConfig(preset="ultrafast"), out=io.StringIO())
    return "s3://train-outage/data"


@pytest.fixture
def outage(s3_endpoint):
    from tests.support.tcp_outage import TcpOutage

    proxy = TcpOutage(int(s3_endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.cut()


def object_versions(prefix: str) -> dict[str, str]:
    """ETag of every object under the prefix as the server holds it now (listed past the forwarder)."""
    from stark.platform import storage

    fs, path = storage.filesystem(prefix)
    fs.invalidate_cache(path)
    return {f"s3://{key}": f"{info['ETag']} {info['size']} B" for key, info in fs.find(path, detail=True).items()}


def train_through(proxy, ray_address: str, folder: Path, args: list[str]) -> subprocess.Popen:
    """`stark train` as a subprocess whose every S3 call (driver, Ray Train controller, workers, decode
    actors) goes through the forwarder: the job resolves the endpoint once and hands it to them."""
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "RAY_ADDRESS": ray_address, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "stark.jobs.train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=folder)


def wait_for_job(job: subprocess.Popen, condition, timeout: float, what: str) -> None:
    """wait_for, with the job's output in the failure (the job is killed then)."""
    try:
        wait_for(lambda: condition() or job.poll() is not None, timeout, what)
    except AssertionError as exc:
        job.kill()
        out, err = job.communicate()
        raise AssertionError(f"{exc}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}") from None
    if job.poll() is not None:
        out, err = job.communicate()
        raise AssertionError(f"the job ended (exit {job.returncode}) before {what}:\n{out[-4000:]}\n{err[-4000:]}")


@pytest.mark.slow
def test_a_run_on_s3_survives_a_ten_second_outage_and_one_that_outlasts_its_retries_ends_it_in_one_line(
        tmp_path, s3_manifest, ray_address, s3_bucket, outage):
    """One job, two outages of its S3 endpoint. The first, 10 s long once the first checkpoint is
    registered, is waited out (storage.retry_seconds=15): stream reads (one open clip per decode actor, so
    clips are fetched again and again) and checkpoint writes carry on after it, and no checkpoint under
    the run is ever visible half-written. The second lasts: the job ends with exit 1 and one line
    naming the endpoint and bucket, no traceback."""
    from stark.platform import storage
    from stark.platform.checkpoint import read_checkpoint_bytes

    runs = f"{s3_bucket}/runs"
    args = job_args(tmp_path, s3_manifest, "train.stages=[1]", "train.stage1.epochs=3", "data.open_clip_cache=1",
                    "storage.retry_seconds=15", "train.max_failures=0", storage_path=runs)
    job = train_through(outage, ray_address, tmp_path, args)
    seen: dict[str, set[str]] = {}

    def look() -> None:
        for uri, etag in object_versions(runs).items():
            seen.setdefault(uri, set()).add(etag)

    wait_for_job(job, lambda: registered_step(runs, 1) >= 4, 600, "the first checkpoint")
    outage.cut()
    cut_at = time.monotonic()
    while time.monotonic() - cut_at < 10:
        look()
        time.sleep(0.5)
    outage.restore()
    wait_for_job(job, lambda: look() or registered_step(runs, 1) >= 12, 600, "two checkpoints after the outage")

    checkpoints = [u for u in seen if "/checkpoint-" in u and u.endswith("/checkpoint.pt")]
    # every version of a checkpoint seen is whole: the size of a whole checkpoint. Two full-suite runs saw
    # checkpoints written twice with different bytes of the same size (the steps redone after the outage:
    # a restart from the last registered checkpoint is the likely cause), so a second version is allowed
    torn = {u: seen[u] for u in checkpoints if len({v.rsplit(" ", 2)[1] for v in seen[u]}) > 1}
    assert checkpoints and not torn, torn
    latest = max(checkpoints)
    step = read_checkpoint_bytes(storage.read_bytes(latest), latest)["step"]
    assert step == int(latest.rsplit("checkpoint-", 1)[1][:9]) >= 12

    outage.cut()  # for good
    out, err = job.communicate(timeout=300)
    assert job.returncode == 1, out + err
    lines = err.strip().splitlines()  # Ray's and MLflow's INFO lines, then the one error line
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    assert lines[-1].startswith(f"error: object storage at {outage.url} (bucket '{s3_bucket[5:]}') did not answer"), err
    assert "storage.retry_seconds" in lines[-1] and "Traceback" not in err
    assert "train: FAILED" in out
