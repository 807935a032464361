"""The cluster manifests in infra/, checked offline.

Structure: every RayCluster and RayJob is valid against the KubeRay v1 CRD schema (tests/infra/kuberay,
provenance in its README), with unknown fields refused as `kubectl apply` refuses them.
Meaning: each RayJob entrypoint is a `stark` command that the job's own parser and config loader
accept; every Ray pod runs the image infra/docker builds and gets the S3 and MLflow settings; the GPU
group asks for GPUs and tolerates GPU nodes; the MLflow server stores runs in PostgreSQL and
artifacts in S3 behind a Service that the tracking URI names.
"""
from __future__ import annotations

import copy
import importlib
import re
import shlex
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from stark.jobs.cli import COMMANDS
from stark.platform.experiment import load_config, preset_names

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra" / "k8s"
CRDS = Path(__file__).resolve().parent / "kuberay"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
S3_AND_MLFLOW = {"AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "MLFLOW_TRACKING_URI"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


# --- loading ------------------------------------------------------------------------------------
def load_manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.load_all(path.read_text(), Loader=LOADER):
            if doc:
                docs.append((str(path.relative_to(REPO)), doc))
    return docs


MANIFESTS = load_manifests()
RAY_OBJECTS = [(f, d) for f, d in MANIFESTS if d["kind"] in ("RayCluster", "RayJob")]
RAY_JOBS = [(f, d) for f, d in MANIFESTS if d["kind"] == "RayJob"]


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in MANIFESTS if d["kind"] == kind}


def ids(items):
    return [f"{d['kind']}:{d['metadata']['name']}" for _, d in items]


def cluster_specs(doc: dict) -> dict:
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def ray_pods(doc: dict) -> list[tuple[str, dict]]:
    """(role, pod spec) for the head and each worker group of a RayCluster or a RayJob's cluster."""
    spec = cluster_specs(doc)
    pods = [("head", spec["headGroupSpec"]["template"]["spec"])]
    pods += [(f"worker group {g['groupName']}", g["template"]["spec"]) for g in spec.get("workerGroupSpecs", [])]
    return pods


def closed(schema):
    """The CRD schema with unknown fields refused wherever the CRD lists the fields (kubectl's strict
    field validation), and left open where it says x-kubernetes-preserve-unknown-fields."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@pytest.fixture(scope="module")
def validators() -> dict[str, jsonschema.Draft7Validator]:
    out = {}
    for name in ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml"):
        crd = yaml.load((CRDS / name).read_text(), Loader=LOADER)
        [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        out[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(closed(v1["schema"]["openAPIV3Schema"]))
    return out


def schema_errors(validators, doc: dict) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
            for e in validators[doc["kind"]].iter_errors(doc)]


# --- structure ----------------------------------------------------------------------------------
def test_every_manifest_names_its_api_version_kind_and_name():
    assert MANIFESTS
    for path, doc in MANIFESTS:
        assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "stark", f"{path}: {doc['kind']} outside namespace stark"


@pytest.mark.parametrize("path,doc", RAY_OBJECTS, ids=ids(RAY_OBJECTS))
def test_ray_objects_are_valid_kuberay_v1(validators, path, doc):
    assert doc["apiVersion"] == "ray.io/v1"
    assert schema_errors(validators, doc) == [], path


def test_the_schema_check_refuses_a_misspelt_field_and_a_wrong_type(validators):
    _, job = RAY_JOBS[0]
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["shutdownAfterJobFinish"] = misspelt["spec"].pop("shutdownAfterJobFinishes")
    assert any("shutdownAfterJobFinish" in e for e in schema_errors(validators, misspelt))
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    assert any("replicas" in e for e in schema_errors(validators, wrong_type))


def test_the_kustomization_applies_every_long_lived_manifest_and_no_job():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    assert not any(p.startswith("jobs") for p in listed)  # RayJobs start work: created one at a time


# --- RayJobs: real stark commands ---------------------------------------------------------------
class Accepted(BaseException):
    """Raised where the job has its config; a BaseException, so that the jobs' error boundary (which turns
    every Exception into an exit code) lets it through to the test."""

    def __init__(self, job_args, cfg):
        super().__init__("accepted")
        self.job_args, self.cfg = job_args, cfg


def accepted_by_the_job(argv: list[str], monkeypatch, capsys) -> Accepted:
    """Run the job's own main() up to its config: its argument parser and the config loader (preset,
    overrides, validation) must accept the command; nothing after that runs."""
    module = importlib.import_module(COMMANDS[argv[0]][0])

    def stop_after_config(args):
        raise Accepted(args, load_config(args.config, args.overrides))

    monkeypatch.setattr(module, "config_from_args", stop_after_config)
    try:
        module.main(argv[1:], prog=f"stark {argv[0]}")
    except Accepted as accepted:
        return accepted
    except SystemExit as exc:
        pytest.fail(f"`stark {shlex.join(argv)}` is refused by its parser ({exc.code}): {capsys.readouterr().err}")
    pytest.fail(f"`stark {argv[0]}` never loaded its config")


# Where each job reads or writes data: on a RayJob's short-lived cluster it must be S3.
STORAGE = {
    "train": lambda args, cfg: [*cfg.data.manifests, cfg.train.storage_path],
    "tune": lambda args, cfg: [args.data, cfg.tune.storage_path],
    "promote": lambda args, cfg: [args.data],
}


def test_there_is_a_rayjob_for_train_tune_and_promote():
    commands = {shlex.split(d["spec"]["entrypoint"])[1] for _, d in RAY_JOBS}
    assert commands >= {"train", "tune", "promote"}


@pytest.mark.parametrize("path,doc", RAY_JOBS, ids=ids(RAY_JOBS))
def test_each_rayjob_entrypoint_is_a_stark_command_its_job_accepts(path, doc, monkeypatch, capsys):
    argv = shlex.split(doc["spec"]["entrypoint"])  # the head runs it through a shell
    assert argv[0] == "stark", f"{path}: the entrypoint runs the image's `stark` console script"
    assert argv[1] in COMMANDS and argv[1] != "submit", f"{path}: unknown command {argv[1]!r}"
    config = argv[argv.index("--config") + 1]
    assert config in preset_names(), f"{path}: --config {config} is neither a preset nor a file the job mounts"
    accepted = accepted_by_the_job(argv[1:], monkeypatch, capsys)
    for uri in STORAGE.get(argv[1], lambda *_: [])(accepted.job_args, accepted.cfg):
        assert uri.startswith("s3://"), f"{path}: {uri} would vanish with the job's cluster; use s3://"


@pytest.mark.parametrize("path,doc", RAY_JOBS, ids=ids(RAY_JOBS))
def test_each_rayjob_shuts_its_cluster_down_and_uploads_no_code(path, doc):
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec.get("ttlSecondsAfterFinished", 0) >= 0 and "rayClusterSpec" in spec
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env, dict)
    # the image carries the package; a local working_dir or py_modules path means nothing to the operator
    assert not {"working_dir", "py_modules", "pip"} & set(runtime_env), path


# --- images -------------------------------------------------------------------------------------
def built_images() -> tuple[str, str]:
    result = subprocess.run(["bash", str(REPO / "infra/docker/build.sh"), "--print"], capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    worker, mlflow = result.stdout.split()
    return worker, mlflow


def test_build_script_tags_the_images_with_the_project_version():
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert built_images() == (f"stark-worker:{version}", f"stark-mlflow:{version}")


@pytest.mark.parametrize("path,doc", RAY_OBJECTS, ids=ids(RAY_OBJECTS))
def test_every_ray_pod_runs_the_worker_image_and_the_ray_version_it_holds(path, doc):
    worker, _ = built_images()
    for role, pod in ray_pods(doc):
        assert [c["image"] for c in pod["containers"]] == [worker], f"{path}: {role}"
    ray_version = re.search(r"^ARG RAY_VERSION=(\S+)$", (REPO / "infra/docker/Dockerfile").read_text(), re.M).group(1)
    assert cluster_specs(doc)["rayVersion"] == ray_version, path


def test_the_worker_image_installs_this_package_from_its_sources():
    dockerfile = (REPO / "infra/docker/Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (?:--\S+ )*(\S+) ", dockerfile, re.M))
    assert {"model", "platform", "jobs", "configs"} <= copied and "pyproject.toml" in dockerfile
    assert re.search(r"pip install [^\n]*\s\.\s", dockerfile), "installs the copied project (non-editable)"
    assert "stark --help" in dockerfile  # the build fails unless the console script runs
    kept = (REPO / "infra/docker/Dockerfile.dockerignore").read_text().split()
    assert {"!model/", "!platform/", "!jobs/", "!configs/", "!pyproject.toml"} <= set(kept)


def test_the_mlflow_server_runs_the_mlflow_image():
    _, mlflow_image = built_images()
    [container] = by_kind("Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == mlflow_image


# --- settings every Ray pod needs ---------------------------------------------------------------
def resolve(ref: dict) -> str:
    """The value a configMapKeyRef / secretKeyRef points at, from the objects defined in infra/k8s."""
    if "configMapKeyRef" in ref:
        r = ref["configMapKeyRef"]
        data = by_kind("ConfigMap")[r["name"]]["data"]
    else:
        r = ref["secretKeyRef"]
        secret = by_kind("Secret")[r["name"]]
        data = {**secret.get("data", {}), **secret.get("stringData", {})}
    assert r["key"] in data, f"{r['name']} has no key {r['key']}"
    return data[r["key"]]


@pytest.mark.parametrize("path,doc", RAY_OBJECTS, ids=ids(RAY_OBJECTS))
def test_every_ray_pod_gets_the_s3_and_mlflow_settings_with_credentials_from_a_secret(path, doc):
    for role, pod in ray_pods(doc):
        for container in pod["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert S3_AND_MLFLOW <= set(env), f"{path}: {role} lacks {sorted(S3_AND_MLFLOW - set(env))}"
            for name in S3_AND_MLFLOW:
                assert resolve(env[name]["valueFrom"]), f"{path}: {role} {name}"
            for name in CREDENTIALS:
                assert "secretKeyRef" in env[name]["valueFrom"], f"{path}: {role} {name} must come from a Secret"


@pytest.mark.parametrize("path,doc", RAY_OBJECTS, ids=ids(RAY_OBJECTS))
def test_the_gpu_group_requests_gpus_and_tolerates_gpu_nodes_and_the_head_needs_none(path, doc):
    spec = cluster_specs(doc)
    [head] = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in head.get("resources", {}).get("limits", {})
    gpu_groups = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu_groups, f"{path}: no GPU worker group"
    for group in gpu_groups:
        pod = group["template"]["spec"]
        for container in pod["containers"]:
            resources = container["resources"]
            assert int(resources["requests"]["nvidia.com/gpu"]) >= 1
            assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"]
        assert any(t["key"] == "nvidia.com/gpu" and t.get("effect") in (None, "NoSchedule")
                   for t in pod.get("tolerations", []))
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


# --- the MLflow server --------------------------------------------------------------------------
def server_args() -> dict[str, str]:
    [container] = by_kind("Deployment")["mlflow"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["mlflow", "server"]
    return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in container["args"])


def serves(service: dict, port: int) -> bool:
    return any(p["port"] == port for p in service["spec"]["ports"])


def test_the_mlflow_server_keeps_runs_in_postgresql_and_artifacts_in_s3():
    args = server_args()
    backend = urlparse(args["backend-store-uri"])
    assert backend.scheme == "postgresql"
    postgres_service = backend.hostname.split(".")[0]
    assert serves(by_kind("Service")[postgres_service], backend.port)
    assert args["artifacts-destination"].startswith("s3://") and "serve-artifacts" in args


def test_the_tracking_uri_every_pod_uses_names_the_mlflow_service_and_the_server_answers_to_it():
    tracking = urlparse(by_kind("ConfigMap")["stark-env"]["data"]["MLFLOW_TRACKING_URI"])
    name, namespace = tracking.hostname.split(".")[:2]
    service = by_kind("Service")[name]
    assert service["metadata"]["namespace"] == namespace and serves(service, tracking.port)
    deployment = by_kind("Deployment")[name]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert tracking.netloc in server_args()["allowed-hosts"].split(",")  # its Host header is let in


# --- local stack scripts ------------------------------------------------------------------------
@pytest.mark.parametrize("script", ["infra/local/start.sh", "infra/local/stop.sh", "infra/docker/build.sh"])
def test_the_scripts_parse_as_bash(script):
    result = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
