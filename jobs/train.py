"""`stark train --config FILE [a.b=value ...]`: stage 1 and/or stage 2 on Ray Train; resumes from the latest checkpoint.

Phases: config and early checks (no Ray yet) -> Ray + the frame index -> the MLflow parent run ->
per stage: nested MLflow run, TorchTrainer (resumes), final checkpoint as artifact -> summary.
Running the same command again resumes each stage from its latest checkpoint (a finished stage is
skipped), logging into the same MLflow runs.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from stark.jobs.args import config_from_args, job_parser
from stark.jobs.boundary import job_boundary
from stark.platform.errors import BadInputError

if TYPE_CHECKING:
    from stark.platform.mlflow_runs import JobRuns
    from stark.platform.train.run_layout import RunPaths


class TrainSetupError(BadInputError):
    """A problem found before any worker starts; the message names the key or URI."""


@dataclass
class StageSummary:
    stage: int
    start_step: int
    step: int
    total_steps: int
    epoch: int
    metrics: dict = field(default_factory=dict)
    final_uri: str = ""
    mlflow_run_id: str | None = None
    skipped: bool = False


@dataclass
class JobState:
    summaries: list[StageSummary] = field(default_factory=list)
    runs: JobRuns | None = None  # once the MLflow runs exist


@job_boundary
def main(argv: list[str] | None = None, prog: str = "stark train") -> int:
    parser = job_parser(prog, __doc__.split(":", 1)[1].split("\n")[0].strip(), default_config="stark_st50")
    args = parser.parse_args(argv)
    cfg = config_from_args(args)  # unknown keys and bad values exit here, naming the key
    plan = check_setup(cfg)  # a TrainSetupError is bad input: the boundary prints it, exit 2
    started = time.monotonic()
    job = JobState()
    try:
        run_job(cfg, plan, job)
    except Exception:
        print_summary(cfg, plan, job, time.monotonic() - started, failed=True)
        raise  # the boundary prints the one error line (or logs the traceback of a bug)
    print_summary(cfg, plan, job, time.monotonic() - started)
    return 0


# --- before anything starts -----------------------------------------------------------------------
@dataclass
class Plan:
    paths: RunPaths
    init_from: dict[int, str | None]  # stage -> weights it starts from when it starts fresh
    tracking_uri: str


def check_setup(cfg) -> Plan:
    """Everything that can be checked without Ray: stages vs model, manifests and their clips, starting weights, and
    that an existing run in the same folder was trained with the same model."""
    from stark.platform import storage
    from stark.platform.ingest.manifest import check_clips_present, manifest_uri, read_records
    from stark.platform.model_loading import MLFLOW_SCHEMES
    from stark.platform.mlflow_runs import resolve_tracking_uri
    from stark.platform.starter import resolve_starter
    from stark.platform.train.run_layout import RunPaths

    t = cfg.train
    if 2 in t.stages and cfg.model.variant != "ST":
        raise TrainSetupError("train.stages includes 2, which trains the score head that only STARK-ST has "
                              "(model.variant=ST)")
    if not cfg.data.manifests:
        raise TrainSetupError("data.manifests is empty: run `stark ingest SRC DEST` and pass data.manifests=[DEST]")
    for uri in cfg.data.manifests:
        try:
            found = storage.exists(manifest_uri(uri), cfg.storage)
        except (storage.StorageError, storage.NoSuchBucketError):
            raise  # already one line naming the endpoint and bucket (an unreachable one exits 1, not 2)
        except Exception as exc:  # bad credentials, ...
            raise TrainSetupError(f"data.manifests: cannot reach {uri}: {exc}") from exc
        if not found:
            raise TrainSetupError(f"data.manifests: no manifest at {manifest_uri(uri)} (run `stark ingest` into {uri})")
        check_clips_present(uri, read_records(uri, cfg.storage), cfg.storage)  # not a decode error in a worker

    paths = RunPaths.for_config(t.storage_path, cfg.name)
    init_from: dict[int, str | None] = {}
    for stage in t.stages:
        first = stage == t.stages[0]
        if first and t.init_from:
            try:  # a shipped starter by name -> its file, its sha256 checked now rather than in a worker
                init_from[stage] = resolve_starter(t.init_from)
            except ValueError as exc:
                raise TrainSetupError(f"train.init_from: {exc}") from exc
        elif stage == 2:
            init_from[stage] = paths.final(1)  # stage 2 starts from stage 1's weights
        else:
            init_from[stage] = None
    spec = init_from[t.stages[0]]
    if spec and not spec.startswith(MLFLOW_SCHEMES) and not storage.exists(spec, cfg.storage):
        key = "train.init_from" if t.init_from else "train.stages"
        raise TrainSetupError(f"{key}: no weights at {spec}" + ("" if t.init_from else
                              " (stage 2 starts from stage 1: run stage 1 first, or set train.init_from)"))
    _check_same_model(cfg, paths)
    return Plan(paths, init_from, resolve_tracking_uri(cfg.mlflow, cfg.home))


def _check_same_model(cfg, paths) -> None:
    import yaml

    from stark.platform import storage
    from stark.platform.experiment import flatten, to_dict

    if not storage.exists(paths.config_yaml, cfg.storage):
        return
    before = yaml.safe_load(storage.read_bytes(paths.config_yaml, cfg.storage)) or {}
    old, new = flatten(before.get("model", {}), "model."), flatten(to_dict(cfg.model), "model.")
    # keys the stored config has (a key added to the schema since then takes its default)
    diff = [k for k in sorted(old) if old[k] != new.get(k) and k != "model.backbone.weights"]
    if diff:
        k = diff[0]
        raise TrainSetupError(f"{paths.run_dir} holds a run of another model ({k}: {old.get(k)!r} there, "
                              f"{new.get(k)!r} now); resume it with its config or choose another `name`")


# --- the job --------------------------------------------------------------------------------------
def run_job(cfg, plan: Plan, job: JobState) -> None:
    import dataclasses

    import ray
    import yaml

    from stark.platform import storage
    from stark.platform.experiment import flatten
    from stark.platform.data.frame_index import load_frame_index
    from stark.platform.mlflow_runs import JobRuns
    from stark.platform.train.run_layout import plain_config

    paths = plan.paths
    config_dict = plain_config(cfg)
    storage.write_bytes_atomic(paths.config_yaml, yaml.safe_dump(config_dict, sort_keys=False).encode(), cfg.storage)

    runs = job.runs = JobRuns(plan.tracking_uri, cfg.mlflow.experiment, run_name=cfg.name, run_dir=paths.run_dir)
    print(f"train: run {paths.run_dir} | mlflow {'resumed' if runs.resumed else 'new'} run {runs.parent_id} "
          f"at {plan.tracking_uri}", flush=True)
    runs.log_params(flatten(config_dict))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "config.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(config_dict, f, sort_keys=False)
        runs.log_artifact(runs.parent_id, path)

    from stark.platform.ray_runtime import init_ray, training_cpu_slots

    init_ray(min_cpus=training_cpu_slots(cfg))  # local Ray by default; RAY_ADDRESS points it at a cluster
    _warn_if_cluster_too_small(cfg)
    index = load_frame_index(list(cfg.data.manifests), cfg.data, cfg.model.num_templates, cfg.storage)
    index_ref = ray.put(index)
    print(f"train: {index.num_sequences} sequences from {', '.join(cfg.data.manifests)}", flush=True)

    worker_storage = dataclasses.asdict(cfg.storage.resolved())
    try:
        for stage in cfg.train.stages:
            job.summaries.append(run_stage(cfg, stage, plan, runs, index_ref, worker_storage))
    except BaseException:
        runs.finish(runs.parent_id, ok=False)
        raise
    runs.finish(runs.parent_id)


def run_stage(cfg, stage: int, plan: Plan, runs, index_ref, worker_storage: dict) -> StageSummary:
    from stark.platform import storage
    from stark.platform.storage import StorageConfig
    from stark.platform.train.trainer import fit_stage
    from stark.platform.train.run_layout import latest_result
    from stark.platform.train.stream import StageStream
    from stark.platform.train.step import SamplerState, remaining_steps, stage_end_sample

    t, paths = cfg.train, plan.paths
    stage_dir = paths.stage_dir(stage)
    n = cfg.data.samples_per_epoch
    end_sample = stage_end_sample(t.stage(stage), n)
    before = latest_result(stage_dir, cfg.storage)
    start_step = int(before.metrics["step"]) if before else 0
    seen = SamplerState.from_dict(before.metrics, n).samples_seen if before else 0
    left = remaining_steps(seen, end_sample, t.num_workers, t.batch_size)
    summary = StageSummary(stage, start_step, start_step, start_step + left, seen // n,
                           dict(before.metrics) if before else {}, paths.final(stage))
    run_id = runs.stage_run(stage)
    summary.mlflow_run_id = run_id

    if left == 0 and storage.exists(paths.final(stage), cfg.storage):
        print(f"train: stage {stage} is complete (step {start_step}, epoch {seen // n}): nothing to do", flush=True)
        summary.skipped = True
    else:
        print(f"train: stage {stage} {'resumes at step ' + str(start_step) if before else 'starts'}: {left} steps "
              f"left on {t.num_workers} worker(s), batch {t.batch_size} each, "
              f"{t.stage(stage).epochs} epochs of {n} samples", flush=True)
        # the stream factory runs in the Ray Train controller, whose environment may lack the AWS variables
        stream = StageStream(index_ref, cfg.data, cfg.model, stage, t.seed, end_sample, stage_dir,
                             StorageConfig(**worker_storage))
        worker_config = {"end_sample": end_sample, "init_from": plan.init_from[stage], "storage": worker_storage,
                         "mlflow": {"tracking_uri": plan.tracking_uri, "run_id": run_id}}
        runs.resume(run_id)  # only a stage with steps left runs again: a finished one keeps its duration
        try:
            result = fit_stage(cfg, stage, paths, stream, worker_config)
        except BaseException:
            runs.finish(run_id, ok=False)
            raise
        summary.metrics = dict(result.metrics or {})
        summary.step = int(summary.metrics.get("step", start_step))
        summary.epoch = int(summary.metrics.get("epoch", 0))
        runs.log_metrics(runs.parent_id, {f"stage{stage}/{k}": v for k, v in summary.metrics.items()
                                          if k in ("loss", "l1", "giou", "iou", "bce", "accuracy", "step")},
                         step=summary.step)
    _log_final_checkpoint(cfg, runs, run_id, paths.final(stage))
    runs.set_tags(run_id, {"stark.checkpoint": paths.final(stage)})
    runs.set_tags(runs.parent_id, {"stark.checkpoint": paths.final(stage), f"stark.stage{stage}_run": run_id})
    runs.finish(run_id)
    return summary


def _log_final_checkpoint(cfg, runs, run_id: str, final_uri: str) -> None:
    """The stage's final.pt as the run's `checkpoint/checkpoint.pt` (what `load_model` looks for)."""
    from stark.platform import storage
    from stark.platform.model_loading import CHECKPOINT_FILE

    if any(a.path == f"checkpoint/{CHECKPOINT_FILE}" for a in runs.client.list_artifacts(run_id, "checkpoint")):
        return  # a resumed job whose stage was finished before
    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, CHECKPOINT_FILE)
        with open(local, "wb") as f:
            f.write(storage.read_bytes(final_uri, cfg.storage))
        runs.log_artifact(run_id, local, "checkpoint")


def _warn_if_cluster_too_small(cfg) -> None:
    import ray

    t = cfg.train
    have = ray.cluster_resources()
    need = {"CPU": t.num_workers * t.cpus_per_worker + cfg.data.decode_actors}
    if t.use_gpu:
        need["GPU"] = t.num_workers
    short = [f"{k} {have.get(k, 0):g} of {v:g}" for k, v in need.items() if have.get(k, 0) < v]
    if short:
        print(f"train: warning: the Ray cluster has {', '.join(short)} needed (train.num_workers, "
              f"train.use_gpu, data.decode_actors); the trainer waits until they appear", file=sys.stderr, flush=True)


# --- the end --------------------------------------------------------------------------------------
def print_summary(cfg, plan: Plan, job: JobState, seconds: float, failed: bool = False) -> None:
    summaries, runs = job.summaries, job.runs
    state = "FAILED" if failed else "done"
    print(f"train: {state} after {seconds / 60:.1f} min - {cfg.name}, stages {cfg.train.stages}")
    for s in summaries:
        terms = ("loss", "l1", "giou", "iou") if s.stage == 1 else ("loss", "bce", "accuracy")
        losses = ", ".join(f"{k} {s.metrics[k]:.4f}" for k in terms if k in s.metrics)
        what = f"already complete at step {s.step}" if s.skipped else f"steps {s.start_step} -> {s.step}"
        print(f"  stage {s.stage}: {what} of {s.total_steps}, {s.epoch}/{cfg.train.stage(s.stage).epochs} epochs; "
              f"final {losses or 'n/a'}")
        print(f"    checkpoint {s.final_uri}")
    print(f"  run folder   {plan.paths.run_dir}  (resumable checkpoints in stage*/checkpoint-*)")
    if runs is not None:
        print(f"  mlflow       {plan.tracking_uri}  experiment '{cfg.mlflow.experiment}' run {runs.parent_id}"
              + "".join(f", stage {s.stage} run {s.mlflow_run_id}" for s in summaries))


if __name__ == "__main__":
    sys.exit(main())
