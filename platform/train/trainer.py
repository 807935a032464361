"""Driver side of a training stage on Ray Train: the `TorchTrainer` that runs `worker.train_loop_per_worker`
for one stage, over a run laid out as `run_layout.RunPaths` says."""
from __future__ import annotations

from typing import Any

from .run_layout import RunPaths, plain_config, ray_storage
from .worker import train_loop_per_worker


def fit_stage(cfg, stage: int, paths: RunPaths, dataset, worker_config: dict[str, Any]):
    """Run (or resume) one stage on Ray Train; returns the ray.train.Result (raises on failure).

    `dataset`: a ray.data.Dataset or a zero-argument factory of one (`stream.StageStream`).
    `worker_config`: the rest of `worker.train_loop_per_worker`'s config (end_sample, ...)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    t = cfg.train
    storage_path, filesystem = ray_storage(paths.run_dir, cfg.storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": plain_config(cfg), "stage": stage, "stage_dir": paths.stage_dir(stage),
                           "final_uri": paths.final(stage), **worker_config},
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
    default). Uncapped, decode workers run thousands of samples ahead of a slow (CPU) training step and
    take the cores it needs; capped, they decode about as fast as training consumes."""
    from ray.train import DataConfig

    options = DataConfig.default_ingest_options()
    options.preserve_order = True  # the stream's batches come in sample order (reproducible, resumable)
    if buffer_mb > 0:
        options.resource_limits = options.resource_limits.copy(object_store_memory=buffer_mb * 1024 * 1024)
    return DataConfig(execution_options=options)

