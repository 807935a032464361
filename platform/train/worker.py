"""The Ray Train per-worker function: plain PyTorch from `step.py` plus the few Ray calls, marked
`# Ray:` - the resume checkpoint, device + DDP, this worker's share of the stream, and reporting
checkpoints. Rank 0 alone prints progress and logs metrics to MLflow (`progress.StageLoop`), and writes
checkpoints.

Resume: `ray.train.get_checkpoint()` is the stage's latest registered checkpoint, both when the job is
run again and when Ray Train restarts the worker group after a worker died (up to train.max_failures
times). Weights, optimizer, scheduler, scaler, step and sampler position come back from it; the data
stream was started at the same sampler position (see `stream.StageStream`), so the step counter,
the LR schedule and the stream all continue from the checkpoint. Steps taken after that checkpoint
by the workers that died are lost and trained again on the same samples.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile

import torch

from ...model.losses import build_loss
from ...model.stark import build_stark
from .. import storage
from ..checkpoint import save_checkpoint
from ..experiment import ExperimentConfig, from_dict
from ..mlflow_runs import resolve_tracking_uri
from ..model_loading import load_model
from ..storage import StorageConfig
from .progress import StageLoop
from .run_layout import WORKER_CHECKPOINT_FILE, checkpoint_uploader
from .step import (SamplerState, TrainingState, advance_schedule, build_optimizer, build_scheduler, final_checkpoint,
                   make_grad_scaler, remaining_steps, restore_training, train_step, training_checkpoint, unwrap)


def train_loop_per_worker(config: dict) -> None:
    """config: {'config': plain experiment dict, 'stage', 'stage_dir', 'final_uri', 'end_sample', 'init_from',
    'storage': resolved StorageConfig dict, 'mlflow': {'tracking_uri', 'run_id'} or None}."""
    import ray.train
    import ray.train.torch

    cfg: ExperimentConfig = from_dict(ExperimentConfig, config["config"], source="train worker")
    stage, t = config["stage"], cfg.train
    storage_cfg = StorageConfig(**config["storage"]) if config.get("storage") else None
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()  # Ray: latest registered checkpoint of this stage, if any

    if t.torch_threads:
        torch.set_num_threads(t.torch_threads)
    torch.manual_seed(t.seed)  # every rank builds the same initial weights
    model = build_model(cfg, stage, fresh=checkpoint is None, init_from=config.get("init_from"),
                        storage_cfg=storage_cfg, tracking_uri=(config.get("mlflow") or {}).get("tracking_uri"))
    model.train_stage(stage)
    model = ray.train.torch.prepare_model(model)  # Ray: to the device, DDP when world > 1
    optimizer = build_optimizer(unwrap(model), stage, t)
    scheduler = build_scheduler(optimizer, t.stage(stage), t)
    scaler = make_grad_scaler(t.amp, device)
    samples_per_epoch = cfg.data.samples_per_epoch
    state = TrainingState(stage, 0, SamplerState(samples_per_epoch))
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            content = torch.load(os.path.join(folder, WORKER_CHECKPOINT_FILE), map_location="cpu", weights_only=True)
        state = restore_training(content, model, optimizer, scheduler, scaler, samples_per_epoch)
    advance_schedule(scheduler, state.sampler.epoch)
    torch.manual_seed(t.seed + 1_000_003 * (rank + 1) + state.step)  # dropout: its own stream per rank and resume

    shard = ray.train.get_dataset_shard("train")  # Ray: this worker's share of the stage stream
    batches = shard.iter_torch_batches(batch_size=t.batch_size, drop_last=True, device=device)

    loop = StageLoop(cfg, stage, state, world, rank, config.get("mlflow"),
                     total_steps=state.step + remaining_steps(state.sampler.samples_seen, config["end_sample"],
                                                              world, t.batch_size))
    if checkpoint is not None:
        loop.log_resume()

    upload = checkpoint_uploader(config["stage_dir"], storage_cfg)  # None: Ray copies to a local folder itself

    def report(complete: bool) -> None:
        metrics = loop.report_metrics(complete)
        name = f"checkpoint-{state.step:09d}"
        if rank != 0:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)  # Ray: all ranks report
            return
        content = training_checkpoint(model, config["config"], state, optimizer, scheduler, scaler)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(content, os.path.join(folder, WORKER_CHECKPOINT_FILE))
            # Ray: uploads the folder to <storage>/<run>/stage<N>/<name> (on S3 with our retries), then registers it
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=name, checkpoint_upload_fn=upload)

    loss_fn = build_loss(stage).to(device)
    last_saved = state.step
    for batch in loop.timed(batches):
        terms = train_step(model, loss_fn, stage, batch, optimizer, scaler, t.amp, t.grad_clip, t.score_label)
        state.step += 1
        state.sampler.samples_seen += t.batch_size * world
        advance_schedule(scheduler, state.sampler.epoch)
        loop.after_step(terms, optimizer)
        if state.step % t.checkpoint_every_steps == 0 and state.step < loop.total_steps:
            report(complete=False)
            last_saved = state.step

    progressed = state.step != loop.first_step  # nothing left when restarted after the final checkpoint
    if rank == 0 and (progressed or not storage.exists(config["final_uri"], storage_cfg)):
        # the final weights first, so that a registered final checkpoint implies final.pt exists
        save_checkpoint(config["final_uri"], final_checkpoint(model, config["config"], state, loop.last_metrics),
                        storage_cfg)
    if state.step != last_saved:
        report(complete=True)
    loop.finish()


def build_model(cfg: ExperimentConfig, stage: int, fresh: bool, init_from: str | None,
                storage_cfg: StorageConfig | None, tracking_uri: str | None):
    """The network: from `init_from` (stage 2: stage 1's final weights) or model.backbone.weights when
    the stage starts fresh; with random weights when a checkpoint will overwrite them anyway."""
    model_cfg = cfg.model
    if not fresh or init_from:
        model_cfg = dataclasses.replace(model_cfg, backbone=dataclasses.replace(model_cfg.backbone, weights=None))
    model = build_stark(model_cfg)
    if fresh and init_from:
        uri = tracking_uri or resolve_tracking_uri(cfg.mlflow, cfg.home)  # where an MLflow URI resolves
        loaded = load_model(init_from, base_cfg=cfg.model, storage_cfg=storage_cfg, tracking_uri=uri)
        weights = loaded.model.state_dict()
        if loaded.model_cfg.head.score_input != model_cfg.head.score_input:
            # a score head reading other inputs cannot be carried over; stage 1 never trains it, and stage 2
            # trains it from scratch, so everything else still starts from init_from
            weights = {k: v for k, v in weights.items() if not k.startswith("score_head.")}
            weights.update({k: v for k, v in model.state_dict().items() if k.startswith("score_head.")})
            print(f"train: stage {stage} starts from {init_from} with a fresh score head (it reads "
                  f"{loaded.model_cfg.head.score_input!r}, model.head.score_input is "
                  f"{model_cfg.head.score_input!r})", flush=True)
        result = model.load_state_dict(weights, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"train.init_from {init_from!r} does not fit model config: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model


