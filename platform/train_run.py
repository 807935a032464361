"""Driver side of a training stage on Ray Train: where a run lives in storage, what its latest checkpoint
says, and the `TorchTrainer` that runs `train_worker.train_loop_per_worker` for one stage.

Layout of a run (`<storage_path>/<name>`, a local folder or s3://bucket/prefix):

    <storage_path>/<name>/
        config.yaml                       the config of the latest invocation (resume refuses another model)
        stage1/                           the Ray Train run of stage 1 (RunConfig(name="stage1"))
            checkpoint_manager_snapshot.json      Ray's record of the registered checkpoints
            checkpoint-000000500/checkpoint.pt    resumable: weights, optimizer, scheduler, scaler, step, sampler
            final.pt                              the stage's weights as a platform checkpoint (`load_model`)
        stage2/ ...

The run name is the config's `name` (never a timestamp), so running the same command again finds the
same folders: Ray Train resumes a run with the same storage_path and name from its latest checkpoint.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stark.platform import storage
from stark.platform.storage import StorageConfig
from stark.platform.training import SamplerState

WORKER_CHECKPOINT_FILE = "checkpoint.pt"  # inside each Ray checkpoint folder
FINAL_FILE = "final.pt"
CONFIG_FILE = "config.yaml"
SECRET_STORAGE_KEYS = ("key", "secret")  # never written into checkpoints or MLflow params


@dataclass(frozen=True)
class RunPaths:
    run_dir: str  # <storage_path>/<name>, absolute (local) or s3://

    @classmethod
    def for_config(cls, storage_path: str, name: str) -> "RunPaths":
        return cls(storage.join(storage.normalize(storage_path), name))

    def stage_dir(self, stage: int) -> str:
        return storage.join(self.run_dir, f"stage{stage}")

    def final(self, stage: int) -> str:
        return storage.join(self.stage_dir(stage), FINAL_FILE)

    @property
    def config_yaml(self) -> str:
        return storage.join(self.run_dir, CONFIG_FILE)


def ray_storage(uri: str, storage_cfg: StorageConfig | None) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for ray.train.RunConfig: S3 goes through our s3fs settings
    (endpoint, credentials) wrapped as a pyarrow filesystem; a local folder needs none."""
    if not storage.is_s3(uri):
        return uri, None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = storage.filesystem(uri, storage_cfg)
    return path, PyFileSystem(FSSpecHandler(fs))


def latest_result(stage_dir: str, storage_cfg: StorageConfig | None):
    """The stage's latest registered checkpoint and the metrics reported with it (a ray.train.Result),
    or None before the first checkpoint."""
    from ray.train import Result

    path, fs = ray_storage(stage_dir, storage_cfg)
    quiet = logging.getLogger("ray.train")  # it explains at length that it found a snapshot to resume from
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        result = Result.from_path(path, storage_filesystem=fs)
    except RuntimeError:  # no such folder, or no checkpoint registered yet
        return None
    finally:
        quiet.setLevel(level)
    return result if result.checkpoint is not None and result.metrics else None


def latest_position(stage_dir: str, samples_per_epoch: int, storage_cfg: StorageConfig | None) -> int:
    """Stream samples consumed at the latest checkpoint (0 for a fresh stage)."""
    result = latest_result(stage_dir, storage_cfg)
    return 0 if result is None else SamplerState.from_dict(result.metrics, samples_per_epoch).samples_seen


def plain_config(cfg) -> dict:
    """The config as stored in checkpoints and logged to MLflow: a plain dict, credentials removed."""
    from stark.platform.config import to_dict

    data = to_dict(cfg)
    for name in SECRET_STORAGE_KEYS:
        if data["storage"].get(name) is not None:
            data["storage"][name] = "<redacted>"
    return data


def fit_stage(cfg, stage: int, paths: RunPaths, dataset, worker_config: dict[str, Any]):
    """Run (or resume) one stage on Ray Train; returns the ray.train.Result (raises on failure).

    `dataset`: a ray.data.Dataset or a zero-argument factory of one (`train_stream.StageStream`).
    `worker_config`: the rest of `train_worker.train_loop_per_worker`'s config (end_sample, ...)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from stark.platform.train_worker import train_loop_per_worker

    t = cfg.train
    storage_path, filesystem = ray_storage(paths.run_dir, cfg.storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": plain_config(cfg), "stage": stage, "final_uri": paths.final(stage),
                           **worker_config},
        scaling_config=ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker={
            "CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})}),
        run_config=RunConfig(name=f"stage{stage}", storage_path=storage_path, storage_filesystem=filesystem,
                             failure_config=FailureConfig(max_failures=t.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=t.keep_checkpoints)),
        datasets={"train": dataset},
        dataset_config=stream_config(cfg.data.stream_buffer_mb),
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),  # DDP's process group
    )
    return trainer.fit()


def stream_config(buffer_mb: int):
    """Ray Train's ingest options, with the stream's object-store buffer capped at `buffer_mb` (0: Ray's
    default). Uncapped, decode actors run thousands of samples ahead of a slow (CPU) training step and
    take the cores it needs; capped, they decode about as fast as training consumes."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True  # the stream's batches come in sample order (reproducible, resumable)
    if buffer_mb > 0:
        options.resource_limits = options.resource_limits.copy(object_store_memory=buffer_mb * 1024 * 1024)
    return DataConfig(execution_options=options)

