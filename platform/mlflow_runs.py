"""MLflow for every job: where the tracking server is, the experiments runs are filed under, one parent
run per training job with a nested run per stage, and a small metric logger the rank-0 training worker uses.

Everything goes through an explicit `MlflowClient(tracking_uri)` and run ids, never MLflow's
process-global active run, so the driver and a Ray worker process log to the same runs.

Tracking URI, first set wins: `mlflow.tracking_uri` in the config, `$MLFLOW_TRACKING_URI`, then the
embedded default `sqlite:///<home>/mlflow.db` (platform/home.py; MLflow 3 refuses the old ./mlruns file
store by default). A relative sqlite path is made absolute here, because Ray workers may run in another
folder; artifacts of an embedded sqlite store go beside the database, `<its folder>/mlruns/<experiment id>/`.
Every experiment is tagged as model development, so the MLflow 3 UI opens it on its runs and charts.
"""
from __future__ import annotations

import math
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .home import Home

PARAM_VALUE_LIMIT = 6000  # MLflow rejects longer param values

# The experiments the platform files its runs under, one per kind of run.
EXPERIMENTS = {
    "train": "stark-train",  # training jobs (the default of mlflow.experiment)
    "evaluate": "stark-evaluate",  # `stark evaluate`
    "tune": "stark-tune",  # `stark tune`
    "register": "stark-registry",  # the run that logs a registered version's model
    "version_evaluation": "stark-promote-evaluations",  # promotion's evaluations of a version, reused on the same data
    "promote": "stark-promote",  # promotion decisions
}


@dataclass
class MlflowConfig:
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<home>/mlflow.db
    experiment: str = EXPERIMENTS["train"]  # experiment that training runs are filed under

    def validate(self) -> None:
        if not self.experiment:
            raise ValueError("mlflow.experiment must not be empty")
        if self.tracking_uri is not None and self.tracking_uri.rstrip("/") in ("", "file:", "./mlruns", "mlruns"):
            raise ValueError(f"mlflow.tracking_uri: {self.tracking_uri!r} is the old file store, which MLflow 3 "
                             f"refuses; use sqlite:///mlflow.db or an http(s):// server")


# The experiment tag the MLflow 3 UI reads to choose an experiment's landing page (its frontend's
# ExperimentKind); without it an experiment may open on the GenAI overview instead of its runs.
EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT = "mlflow.experimentKind", "custom_model_development"


def resolve_tracking_uri(cfg: MlflowConfig, home: str | None = None) -> str:
    """cfg.tracking_uri, else $MLFLOW_TRACKING_URI, else the sqlite store in the home (`home` as the config's
    `home` key gives it)."""
    uri = cfg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or Home.resolve(home).tracking_uri
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        uri = prefix + os.path.abspath(uri[len(prefix):])  # sqlite:////abs/path/mlflow.db
    return uri


def embedded_artifact_location(tracking_uri: str) -> str | None:
    """An embedded sqlite store keeps its artifacts beside the database file (`<db folder>/mlruns`),
    not in whatever folder the job happens to run in; a server decides for itself (None)."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    return os.path.join(os.path.dirname(os.path.abspath(tracking_uri[len(prefix):])), "mlruns")


def mlflow_client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(client, name: str, tracking_uri: str) -> str:
    """The id of experiment `name`, created on first use (an embedded store keeps its artifacts beside it),
    tagged as model development (an older experiment gets the tag the first time it is used). Two jobs may
    both find it missing: the one whose create loses reads the winner's."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=embedded_artifact_location(tracking_uri),
                                            tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT})
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                raise
        found = client.get_experiment_by_name(name)
    if EXPERIMENT_KIND_TAG not in found.tags:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return found.experiment_id


# --- registered model URIs (no PyTorch: an ONNX Runtime process resolves them too) ---
def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """models:/NAME/VERSION or models:/NAME@ALIAS -> (name, version, alias)."""
    if not uri.startswith("models:/"):
        raise ValueError(f"{uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    rest = uri[len("models:/"):].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        return name, version, None
    raise ValueError(f"{uri!r}: name a version (models:/{rest}/3) or an alias (models:/{rest}@champion)")


def resolve_version(client, uri: str) -> str:
    name, version, alias = parse_model_uri(uri)
    if alias is not None:
        return str(client.get_model_version_by_alias(name, alias).version)
    return str(client.get_model_version(name, version).version)  # raises if it does not exist


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= PARAM_VALUE_LIMIT else text[:PARAM_VALUE_LIMIT - 3] + "..."


@contextmanager
def job_run(tracking_uri: str, kind: str, run_name: str) -> Iterator[tuple[Any, str]]:
    """One run of a job invocation in experiment EXPERIMENTS[kind]: yields (client, run_id); the run ends
    FINISHED with the block, FAILED if it raises."""
    client = mlflow_client(tracking_uri)
    run_id = client.create_run(experiment_id(client, EXPERIMENTS[kind], tracking_uri), run_name=run_name).info.run_id
    try:
        yield client, run_id
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    """Params of a new run, in batches of the 100 that log_batch takes at most."""
    from mlflow.entities import Param

    batch = [Param(k, _param_value(v)) for k, v in params.items()]
    for start in range(0, len(batch), 100):
        client.log_batch(run_id, params=batch[start:start + 100])


class JobRuns:
    """The MLflow runs of one training job: a parent run found again by the job's run folder (so a
    resumed job keeps logging to the same runs), and one nested run per stage.

    A run found again stays as it was until `resume` says work starts in it: a re-run with nothing to do
    leaves its status, end time and so its duration alone (MLflow shows end - start, which would
    otherwise grow by the time between the invocations)."""

    KIND_TAG, RUN_DIR_TAG, STAGE_TAG = "stark.kind", "stark.run_dir", "stark.stage"

    def __init__(self, tracking_uri: str, experiment: str, run_name: str, run_dir: str):
        self.tracking_uri, self.run_dir = tracking_uri, run_dir
        self.client = mlflow_client(tracking_uri)
        self.experiment_id = experiment_id(self.client, experiment, tracking_uri)
        self.running: set[str] = set()  # runs this invocation works in: created, or resumed with work to do
        existing = self._find({self.KIND_TAG: "train", self.RUN_DIR_TAG: run_dir}, parent=None)
        self.resumed = existing is not None
        if existing is None:
            self.parent_id = self.client.create_run(
                self.experiment_id, run_name=run_name,
                tags={self.KIND_TAG: "train", self.RUN_DIR_TAG: run_dir}).info.run_id
            self.running.add(self.parent_id)
        else:
            self.parent_id = existing

    def _find(self, tags: dict[str, str], parent: str | None) -> str | None:
        from mlflow.entities import ViewType

        clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
        if parent is not None:
            clauses.append(f"tags.`mlflow.parentRunId` = '{parent}'")
        runs = self.client.search_runs([self.experiment_id], " and ".join(clauses), run_view_type=ViewType.ACTIVE_ONLY,
                                       order_by=["attributes.start_time ASC"])
        if parent is None:
            runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        return runs[0].info.run_id if runs else None

    def log_params(self, params: dict[str, Any]) -> None:
        """Params are immutable in MLflow: a resumed job logs only the ones not logged yet and reports
        values that differ (they were changed between invocations) instead of failing."""
        from mlflow.entities import Param

        logged = self.client.get_run(self.parent_id).data.params
        new = [Param(k, _param_value(v)) for k, v in params.items() if k not in logged]
        changed = [k for k, v in params.items() if k in logged and logged[k] != _param_value(v)]
        for start in range(0, len(new), 100):  # log_batch takes at most 100 params per call
            self.client.log_batch(self.parent_id, params=new[start:start + 100])
        if changed:
            print(f"mlflow: params changed since this run started, kept the first values: {', '.join(changed)}",
                  file=sys.stderr)

    def stage_run(self, stage: int) -> str:
        """The stage's run: the one an earlier invocation made (untouched until `resume`), else a new one."""
        existing = self._find({self.STAGE_TAG: str(stage)}, parent=self.parent_id)
        if existing is not None:
            return existing
        run_id = self.client.create_run(self.experiment_id, run_name=f"stage{stage}",
                                        tags={"mlflow.parentRunId": self.parent_id, self.STAGE_TAG: str(stage),
                                              self.KIND_TAG: "train-stage"}).info.run_id
        self.running.add(run_id)
        return run_id

    def resume(self, run_id: str) -> None:
        """Work starts in `run_id` (and so in the parent): both are RUNNING until `finish`."""
        from mlflow.entities import RunStatus

        for run in (self.parent_id, run_id):
            if run not in self.running:
                self.client.update_run(run, status=RunStatus.to_string(RunStatus.RUNNING))
                self.running.add(run)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, local_path, artifact_path)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        log_metrics(self.client, run_id, metrics, step)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def finish(self, run_id: str, ok: bool = True) -> None:
        """End the run: now if this invocation worked in it. A run it did no work in keeps its end time;
        only its status changes, when it must (an earlier invocation left it FAILED or RUNNING)."""
        status = "FINISHED" if ok else "FAILED"
        if run_id in self.running:
            self.client.set_terminated(run_id, status=status)
            self.running.discard(run_id)
            return
        info = self.client.get_run(run_id).info
        if info.status != status:
            self.client.set_terminated(run_id, status=status, end_time=info.end_time or None)


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None and math.isfinite(v)]
    if batch:
        client.log_batch(run_id, metrics=batch)


class MetricLogger:
    """Per-step metrics from the rank-0 worker. A tracking server that stops answering costs a warning,
    never the training run."""

    def __init__(self, tracking_uri: str | None, run_id: str | None):
        self.run_id = run_id
        self.client = mlflow_client(tracking_uri) if tracking_uri and run_id else None
        self.failures = 0

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        try:
            log_metrics(self.client, self.run_id, metrics, step)
        except Exception as exc:  # noqa: BLE001 - any tracking error must not stop training
            self.failures += 1
            if self.failures == 1:
                print(f"mlflow: could not log metrics ({exc}); training continues", file=sys.stderr)
