"""`stark submit`: how it builds a job's runtime environment (fast), then against a real local stack,
as a developer runs it (slow).

infra/local/start.sh brings up a Ray head (with its job API), an S3 endpoint and an MLflow server on
127.0.0.1, on ports of their own and a state folder of their own. Jobs go through Ray's job
submission API exactly as they would to a cluster; their results are read back from disk, S3 and
the MLflow server. infra/local/stop.sh then ends exactly the processes start.sh started (never
`ray stop`, which would also stop every other Ray on the machine).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.support.model_fixtures import official_model_config, preset_model_config
from stark.jobs import submit as submit_job
from stark.model.stark import build_stark
from stark.platform.ingest.synthetic import make_sequences, write_got10k
from tests.model.test_official_checkpoint import official_state_dict, write_release_file



def slow(test):
    """End to end against the local stack: real processes, minutes on 2 cores."""
    return pytest.mark.slow(pytest.mark.timeout(600)(test))

BUCKET = "stark"
VAL = ["GOT-10k_Val_000001", "GOT-10k_Val_000002"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    state: Path
    env: dict[str, str]  # this machine's environment plus the exports start.sh printed
    exports: dict[str, str]

    def pid(self, name: str) -> int:
        return int((self.state / f"{name}.pid").read_text())


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def submit(stack: Stack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "stark.jobs.cli", "submit", *args], stack.env, timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def stack(repo_root):
    # A short folder: Ray's unix sockets live under it and their paths must stay below 108 characters.
    state = Path(tempfile.mkdtemp(prefix="stk", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_", "MLFLOW_"))}
    env.update(STARK_LOCAL_DIR=str(state), STARK_RAY_PORT=str(free_port()),
               STARK_RAY_DASHBOARD_PORT=str(free_port()), STARK_S3_PORT=str(free_port()),
               STARK_MLFLOW_PORT=str(free_port()), PYTHON=sys.executable,
               # logical CPUs: a training worker, a decode actor and Ray Data's read tasks at once
               STARK_RAY_NUM_CPUS="4",
               # jobs run `python -m stark.jobs.cli`: the head must find this interpreter first
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = run(["bash", str(repo_root / "infra/local/start.sh")], env, timeout=420)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        exports = dict(re.findall(r"^export (\w+)=(.*)$", (state / "env").read_text(), re.M))
        yield Stack(state, {**env, **exports}, exports)
    finally:
        run(["bash", str(repo_root / "infra/local/stop.sh")], env, timeout=180)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def got10k_and_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("submit")
    write_got10k(str(root / "got10k"), {"val": make_sequences(VAL, 24, (160, 120), seed=0)})
    torch.manual_seed(0)
    checkpoint = root / "STARKST_ep0050.pth.tar"
    write_release_file(checkpoint, official_state_dict(build_stark(official_model_config("stark_tiny"))))
    return root / "got10k", checkpoint


def s3_keys(stack: Stack, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=stack.exports["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=stack.exports["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=stack.exports["AWS_SECRET_ACCESS_KEY"])
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def s3_uris(stack: Stack, prefix: str) -> list[str]:
    return [f"s3://{BUCKET}/{key}" for key in s3_keys(stack, prefix)]


# --- the runtime environment (fast) --------------------------------------------------------------
def test_the_job_after_the_double_dash_must_be_a_stark_command(capsys):
    args, command = submit_job.parse_args(["--address", "http://h:8265", "--", "stark", "train", "a.b=1"],
                                          "stark submit")
    assert command == ["train", "a.b=1"] and args.address == "http://h:8265"
    assert submit_job.parse_args(["--address", "http://h:8265", "--", "train"], "stark submit")[1] == ["train"]
    for argv, says in ([["--address", "http://h:8265"], "give the job after --"],
                       [["--address", "http://h:8265", "--", "stark", "bogus"], "'bogus' is not a stark command"],
                       [["--address", "http://h:8265", "--", "stark", "submit"], "'submit' is not a stark command"]):
        with pytest.raises(SystemExit) as exit_:
            submit_job.parse_args(argv, "stark submit")
        assert exit_.value.code == 2 and says in capsys.readouterr().err


def test_the_address_comes_from_the_flag_or_ray_address(monkeypatch, capsys):
    monkeypatch.setenv("RAY_ADDRESS", "http://from-env:8265")
    assert submit_job.parse_args(["--", "model-summary"], "stark submit")[0].address == "http://from-env:8265"
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(SystemExit):
        submit_job.parse_args(["--", "model-summary"], "stark submit")
    assert "--address is required" in capsys.readouterr().err


def test_s3_and_mlflow_settings_travel_with_the_job_but_local_file_settings_do_not():
    environ = {"AWS_ENDPOINT_URL": "http://s3:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
               "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_TRACKING_URI": "http://mlflow:5000",
               "AWS_CA_BUNDLE": "/etc/ssl/local.pem", "AWS_PROFILE": "dev", "HOME": "/root", "RAY_AUTH_MODE": "token"}
    env = submit_job.passthrough_env(environ, ["EXTRA=1", "MLFLOW_TRACKING_URI=http://other:5000"])
    assert env == {"AWS_ENDPOINT_URL": "http://s3:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                   "AWS_DEFAULT_REGION": "us-east-1", "MLFLOW_TRACKING_URI": "http://other:5000", "EXTRA": "1",
                   "PYTHONUNBUFFERED": "1"}


def test_the_staged_package_is_one_regular_stark_package_that_wins_over_the_installed_one(tmp_path, repo_root):
    staged = submit_job.stage_package(tmp_path)
    assert staged == tmp_path / "stark" and (staged / "__init__.py").is_file()
    for module in ("model/stark.py", "platform/experiment.py", "platform/train/worker.py", "platform/ingest/__init__.py",
                   "jobs/cli.py", "jobs/submit.py", "configs/stark_tiny.yaml"):
        assert (staged / module).is_file(), module
    assert not list(staged.rglob("__pycache__"))
    # what a Ray worker sees: the py_modules folder first on PYTHONPATH, the installed copy further down
    probe = ("import platform, stark, stark.jobs.cli, stark.platform.experiment as c; "
             "print(stark.__file__); print(c.__file__); print(platform.system())")
    result = subprocess.run([sys.executable, "-c", probe], cwd=repo_root, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, timeout=120)
    assert result.returncode == 0, result.stderr
    stark_file, config_file, system = result.stdout.split()
    assert Path(stark_file).parent == staged and Path(config_file).parent == staged / "platform" and system


def test_the_runtime_env_and_entrypoint(tmp_path, repo_root):
    runtime_env = submit_job.build_runtime_env(tmp_path / "stark", repo_root, {"A": "1"})
    assert runtime_env["py_modules"] == [str(tmp_path / "stark")] and runtime_env["working_dir"] == str(repo_root)
    assert runtime_env["env_vars"] == {"A": "1"} and ".git" in runtime_env["excludes"]
    assert submit_job.build_runtime_env(None, None, {}) == {"env_vars": {}}  # --installed: nothing uploaded
    assert submit_job.project_root() == repo_root  # this checkout is an editable install
    assert submit_job.entrypoint(["train", "data.manifests=[s3://b/d]"]) == \
        "python -m stark.jobs.cli train 'data.manifests=[s3://b/d]'"


def test_the_exit_code_is_zero_only_for_a_job_that_succeeded():
    from types import SimpleNamespace

    from ray.job_submission import JobStatus

    def code(status, driver_exit_code=None):
        return submit_job.exit_code(SimpleNamespace(status=status, driver_exit_code=driver_exit_code))

    assert code(JobStatus.SUCCEEDED, 0) == 0
    assert code(JobStatus.FAILED, 2) == 2  # the job's own code: 2 = refused config
    assert code(JobStatus.FAILED, None) == 1 and code(JobStatus.FAILED, -9) == 1
    assert code(JobStatus.STOPPED, None) == 1


def test_an_unreachable_head_fails_fast_with_exit_code_2(capsys):
    assert submit_job.main(["--address", f"http://127.0.0.1:{free_port()}", "--", "model-summary"]) == 2
    assert "cannot reach the Ray job API" in capsys.readouterr().err


# --- the stack ----------------------------------------------------------------------------------
@slow
def test_the_local_stack_answers_on_loopback_and_the_job_api_wants_its_token(stack):
    jobs_api = stack.exports["RAY_ADDRESS"] + "/api/jobs/"
    assert jobs_api.startswith("http://127.0.0.1:")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(jobs_api, timeout=10)
    assert refused.value.code == 401
    token = Path(stack.exports["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    request = urllib.request.Request(jobs_api, headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(request, timeout=10).status == 200
    assert urllib.request.urlopen(stack.exports["MLFLOW_TRACKING_URI"] + "/health", timeout=10).status == 200
    assert s3_keys(stack, "") == []  # the bucket exists, empty


# --- stark submit -------------------------------------------------------------------------------
@slow
def test_a_job_runs_on_the_head_and_its_logs_stream_back(stack):
    result = submit(stack, "--", "stark", "model-summary", "--config", "stark_tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FLOPs per tracked frame" in result.stdout
    assert re.search(r"job raysubmit_\w+ SUCCEEDED", result.stdout)


@slow
def test_a_failed_job_returns_its_exit_code_and_ran_the_uploaded_code(stack):
    result = submit(stack, "--", "stark", "model-summary", "--config", "stark_tiny", "model.bogus=1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "FAILED" in result.stdout and "unknown key model.bogus" in result.stdout
    # the preset was read from the staged package Ray unpacked, not from this checkout
    assert re.search(r"runtime_resources/py_modules_files/[^/]+/stark/configs/stark_tiny\.yaml", result.stdout)


@slow
def test_no_wait_returns_with_a_follow_command_and_an_ingest_job_writes_to_s3(stack, got10k_and_checkpoint):
    tree, _ = got10k_and_checkpoint
    result = submit(stack, "--no-wait", "--", "stark", "ingest", str(tree), f"s3://{BUCKET}/data/got10k")
    assert result.returncode == 0, result.stdout + result.stderr
    follow = re.search(r"follow: (ray job logs --follow (raysubmit_\w+) --address \S+)", result.stdout)
    assert follow, result.stdout
    logs = run(follow.group(1).split(), stack.env)
    assert logs.returncode == 0 and "ingested 2 sequences" in logs.stdout, logs.stdout + logs.stderr
    status = run(["ray", "job", "status", follow.group(2), "--address", stack.exports["RAY_ADDRESS"]], stack.env)
    assert "succeeded" in (status.stdout + status.stderr).lower()
    keys = s3_keys(stack, "data/got10k/")
    assert "data/got10k/manifest.parquet" in keys and any(k.startswith("data/got10k/clips/") for k in keys)


@slow
def test_an_evaluation_job_reads_s3_and_logs_to_the_mlflow_server_with_artifacts_in_s3(stack, got10k_and_checkpoint,
                                                                                       tmp_path):
    _, checkpoint = got10k_and_checkpoint
    if "data/got10k/manifest.parquet" not in s3_keys(stack, "data/got10k/"):
        pytest.skip("reads the data the ingest job above writes")
    out = tmp_path / "eval"
    result = submit(stack, "--", "stark", "evaluate", "--config", "stark_tiny", "--model", str(checkpoint),
                    "--data", f"s3://{BUCKET}/data/got10k", "--split", "val", "--out", str(out),
                    "evaluate.num_workers=0")  # tracks in the driver; the training job below uses workers
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[2/2]" in result.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["sequences"] == 2 and summary["frames"] == 48

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.exports["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("stark-evaluate")
    [run_info] = client.search_runs([experiment.experiment_id])
    assert run_info.info.status == "FINISHED"
    assert run_info.data.metrics["got10k/ao"] == pytest.approx(summary["scores"]["ao"])
    # artifacts went through the MLflow server's proxy into the S3 bucket
    keys = s3_keys(stack, f"mlflow/{experiment.experiment_id}/{run_info.info.run_id}/artifacts/eval/got10k/")
    assert any(k.endswith("summary.json") for k in keys) and any(k.endswith("success.png") for k in keys)


@slow
def test_a_tiny_training_job_reads_s3_and_leaves_a_checkpoint_in_s3_and_a_run_in_mlflow(stack):
    if "data/got10k/manifest.parquet" not in s3_keys(stack, "data/got10k/"):
        pytest.skip("reads the data the ingest job above writes")
    # stage 1 of the tiny preset for 8 steps: one Ray Train worker, one decode actor (both read S3)
    result = submit(stack, "--", "stark", "train", "--config", "stark_tiny",
                    f"data.manifests=[s3://{BUCKET}/data/got10k]", "data.splits=[val]", "data.samples_per_epoch=32",
                    "data.decode_actors=1", "train.stages=[1]", "train.stage1.epochs=1",
                    "train.stage1.lr_drop_epoch=1", "train.num_workers=1", "train.batch_size=4",
                    "train.log_every_steps=2", "train.checkpoint_every_steps=4",
                    f"train.storage_path=s3://{BUCKET}/runs", "mlflow.experiment=submit-tests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"s3://{BUCKET}/runs/stark_tiny/stage1/final.pt" in s3_uris(stack, "runs/stark_tiny/stage1/")

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=stack.exports["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("submit-tests")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and all(r.info.status == "FINISHED" for r in runs)
    [stage1] = [r for r in runs if r.data.tags.get("stark.stage") == "1"]
    assert "loss" in stage1.data.metrics
    assert [a.path for a in client.list_artifacts(stage1.info.run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]


@slow
def test_plain_ray_job_submit_runs_a_stark_command_with_the_repo_as_working_dir(stack, repo_root):
    # The path a KubeRay image takes: `stark` is installed on the head, the repo is only the working_dir.
    result = run(["ray", "job", "submit", "--address", stack.exports["RAY_ADDRESS"], "--working-dir",
                  str(repo_root), "--", "stark", "model-summary", "--config", "stark_tiny"], stack.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FLOPs per tracked frame" in result.stdout


# --- stopping -----------------------------------------------------------------------------------
@slow
def test_stop_ends_exactly_the_processes_start_started(stack, repo_root):
    pids = {name: stack.pid(name) for name in ("ray", "s3", "mlflow")}
    session_marker = str(stack.state / "ray")
    result = run(["bash", str(repo_root / "infra/local/stop.sh")], stack.env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert not [name for name, pid in pids.items() if alive(pid)]
    leftovers = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and session_marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                leftovers.append(proc.name)
        except OSError:
            continue
    assert leftovers == [], f"processes of this head still running: {leftovers}"
    for port in ("STARK_RAY_DASHBOARD_PORT", "STARK_S3_PORT", "STARK_MLFLOW_PORT"):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(stack.env[port]))) != 0, f"{port} still answers"
