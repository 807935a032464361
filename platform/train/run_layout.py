"""Where a training run lives in storage, and what its latest checkpoint says.

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
import os
from dataclasses import dataclass
from typing import Any

from .. import storage
from ..experiment import to_dict
from ..storage import StorageConfig
from .step import SamplerState


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
    (endpoint, credentials) as a pyarrow filesystem whose checkpoint writes and reads are retried through
    an outage for storage.retry_seconds, like every other storage call; a local folder needs none."""
    if not storage.is_s3(uri):
        return uri, None
    return storage.arrow_filesystem(uri, storage_cfg)


def checkpoint_uploader(stage_dir: str, storage_cfg: StorageConfig | None):
    """For ray.train.report(checkpoint_upload_fn=...): a stage stored on S3 uploads each file of a checkpoint
    folder with `storage.upload_file` (retried through an outage for storage.retry_seconds, then one
    StorageError; never a partial object) into <stage_dir>/<checkpoint name>, where Ray Train's own upload
    would put it. None for a local folder (Ray's copy is a local file copy). Ray's own upload, a
    `pyarrow.fs.copy_files`, cannot be used on S3: it ignores a failed upload (see storage.RetryingS3Handler)."""
    if not storage.is_s3(stage_dir):
        return None
    fs_path, filesystem = ray_storage(stage_dir, storage_cfg)

    def upload(checkpoint, name: str):
        import ray.train

        for folder, _, files in os.walk(checkpoint.path):
            for file in sorted(files):
                local = os.path.join(folder, file)
                relative = os.path.relpath(local, checkpoint.path).replace(os.sep, "/")
                storage.upload_file(local, storage.join(stage_dir, name, relative), storage_cfg)
        return ray.train.Checkpoint(path=f"{fs_path}/{name}", filesystem=filesystem)

    return upload


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
    data = to_dict(cfg)
    for name in SECRET_STORAGE_KEYS:
        if data["storage"].get(name) is not None:
            data["storage"][name] = "<redacted>"
    return data
