"""Shared fixtures. Tests import the project as `stark.*`, exactly as an installed copy does."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# Helpers the tests share live in tests/support/ and are imported as `tests.support.*` (tests/ is a package,
# so pytest puts the repo root on sys.path; its platform/ folder has no __init__.py and shadows nothing).


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def stark_home(tmp_path_factory) -> Path:
    """The platform's home (platform/home.py) for the whole session, in a temporary folder: no test writes
    to the user's ~/.stark. Jobs started as subprocesses inherit it. A test that needs a home of its own
    sets STARK_HOME (or home=...) itself."""
    import os

    home = tmp_path_factory.mktemp("stark-home")
    saved = os.environ.get("STARK_HOME")
    os.environ["STARK_HOME"] = str(home)
    yield home
    if saved is None:
        os.environ.pop("STARK_HOME", None)
    else:
        os.environ["STARK_HOME"] = saved


# --- a real S3 endpoint on 127.0.0.1 (moto's server mode, as a separate process) -------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """URL of an S3 server process on 127.0.0.1 for the whole session; AWS_* variables point at it."""
    import os
    import shutil
    import subprocess
    import time
    import urllib.request

    port = _free_port()
    command = [shutil.which("moto_server") or sys.executable, "-H", "127.0.0.1", "-p", str(port)]
    if not shutil.which("moto_server"):
        command[1:1] = ["-m", "moto.server"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180  # at nice 19 on a busy 2-core machine it took 78 s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on {url}")
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                                            "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=url)
    yield url
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A fresh, empty bucket on the session's S3 endpoint: 's3://<name>'."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=name)
    return f"s3://{name}"


# --- a real MLflow tracking server on 127.0.0.1 (sqlite backend, artifacts proxied to the S3 endpoint) ----
class MlflowServer:
    """`mlflow server` as a separate process; stop() and start() simulate an outage on the same store."""

    def __init__(self, workdir: Path, artifacts: str, s3_endpoint: str):
        self.workdir, self.artifacts, self.s3_endpoint = workdir, artifacts, s3_endpoint
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self) -> None:
        import os
        import shutil
        import subprocess
        import time
        import urllib.request

        env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               # MLflow 3 otherwise starts ~8 job-runner processes per server (GenAI jobs no test uses):
               # seconds of CPU each start on a 2-core machine
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [shutil.which("mlflow") or "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--backend-store-uri", f"sqlite:///{self.workdir}/mlflow.db",
                   "--artifacts-destination", self.artifacts, "--workers", "1"]
        log = open(self.workdir / "server.log", "ab")
        self.process = subprocess.Popen(command, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mlflow server did not start: {(self.workdir / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)

    def stop(self) -> None:
        import os
        import signal

        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except Exception:  # noqa: BLE001
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def mlflow_server(tmp_path, s3_bucket, s3_endpoint):
    """A fresh MLflow server (empty registry) whose artifacts live in a fresh bucket of the S3 endpoint."""
    server = MlflowServer(tmp_path, f"{s3_bucket}/mlartifacts", s3_endpoint)
    server.start()
    yield server
    server.stop()


# --- models and data shared by the tracking, tuning and registry tests ------------------------------------
@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory):
    """A tiny STARK-ST trained briefly on generated data (about a minute on 2 cores, once per session)."""
    import ray

    from tests.support.trained_model import train_tiny

    started_ray = not ray.is_initialized()
    try:
        return train_tiny(tmp_path_factory.mktemp("trained"))
    finally:
        if started_ray and ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="session")
def random_checkpoint(tmp_path_factory):
    """An untrained tiny STARK-ST: what 'clearly worse' looks like. It is stored with re-detection off
    (`tracker.redetect_after: 0`, as a tuned model stores its settings): an untrained score never says
    "sure", so with the preset's re-detection every frame would search a grid of 16 windows, tripling the
    tracking time of every test that evaluates it (tests/track/test_redetection.py specifies re-detection)."""
    import torch

    from stark.model.stark import build_stark
    from stark.platform.checkpoint import make_checkpoint, save_checkpoint
    from stark.platform.experiment import load_config, to_dict

    cfg = load_config("stark_tiny")
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("random") / "random_tiny.pt"
    save_checkpoint(str(path), make_checkpoint(build_stark(cfg.model), to_dict(cfg), tracker={"redetect_after": 0}))
    return path


@pytest.fixture(scope="session")
def val_tree(tmp_path_factory):
    """A GOT-10k tree with a val split of 6 generated sequences (different scenes from training)."""
    from stark.platform.ingest.synthetic import make_sequences, write_got10k

    root = tmp_path_factory.mktemp("got10k_val")
    names = [f"GOT-10k_Val_{i:06d}" for i in range(1, 7)]
    write_got10k(str(root), {"val": make_sequences(names, 30, (160, 120), seed=7)})
    return root


@pytest.fixture(scope="session")
def own_track_tree(tmp_path_factory, val_tree):
    """own_track_tree(checkpoint) -> a copy of val_tree whose ground truth is that model's own track (stark_tiny's
    tracker settings under the model's stored ones). The model scores AO 1 on it and the static box only what
    the track's motion leaves it: data on which a given model beats the static box by construction, for
    specifications of the promotion gate that must not hang on how well a tiny model trains."""
    import shutil

    from stark.platform.experiment import load_config
    from stark.platform.evaluate.runner import load_sequences, track_model
    from stark.platform.evaluate.config import EvalConfig
    from stark.platform.model_loading import load_model

    made: dict[str, Path] = {}

    def tree(checkpoint) -> Path:
        if str(checkpoint) in made:
            return made[str(checkpoint)]
        root = tmp_path_factory.mktemp("own_track")
        shutil.copytree(val_tree, root, dirs_exist_ok=True)
        loaded = load_model(str(checkpoint))
        settings = load_config("stark_tiny").tracker_choice.for_model(loaded.tracker)
        sequences = load_sequences(str(root), split="val")
        results = track_model(loaded, settings, sequences, EvalConfig(num_workers=0))
        for seq in sequences:
            lines = "".join(",".join(f"{v:.4f}" for v in box) + "\n" for box in results[seq.name].boxes)
            (root / "val" / seq.name / "groundtruth.txt").write_text(lines)
        made[str(checkpoint)] = root
        return root

    return tree
