"""The Ray Train per-worker function: plain PyTorch from `step.py` plus the few Ray calls, marked
`# Ray:` - the resume checkpoint, device + DDP, this worker's share of the stream, and reporting
checkpoints. Rank 0 alone prints progress, logs metrics to MLflow and writes checkpoints.

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
import sys
import tempfile
import time

import torch

from ...model.losses import build_loss
from ...model.stark import build_stark
from .. import storage
from ..checkpoint import save_checkpoint
from ..experiment import ExperimentConfig, from_dict
from ..mlflow_runs import MetricLogger
from ..model_loading import MLFLOW_SCHEMES, load_model
from ..storage import StorageConfig
from .run_layout import WORKER_CHECKPOINT_FILE
from .step import (SamplerState, TrainingState, advance_schedule, build_optimizer, build_scheduler, final_checkpoint,
                   make_grad_scaler, remaining_steps, restore_training, train_step, training_checkpoint, unwrap)


def train_loop_per_worker(config: dict) -> None:
    """config: {'config': plain experiment dict, 'stage', 'final_uri', 'end_sample', 'init_from',
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

    def report(complete: bool) -> None:
        metrics = loop.report_metrics(complete)
        name = f"checkpoint-{state.step:09d}"
        if rank != 0:
            ray.train.report(metrics, checkpoint=None, checkpoint_dir_name=name)  # Ray: all ranks report
            return
        content = training_checkpoint(model, config["config"], state, optimizer, scheduler, scaler)
        with tempfile.TemporaryDirectory() as folder:
            torch.save(content, os.path.join(folder, WORKER_CHECKPOINT_FILE))
            # Ray: uploads the folder to <storage>/<run>/stage<N>/<name>, then registers it
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder),
                             checkpoint_dir_name=name)

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
        if init_from.startswith(MLFLOW_SCHEMES) and tracking_uri:
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
        loaded = load_model(init_from, base_cfg=cfg.model, storage_cfg=storage_cfg)
        result = model.load_state_dict(loaded.model.state_dict(), strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(f"train.init_from {init_from!r} does not fit model config: missing "
                             f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return model


class StageLoop:
    """Bookkeeping around the steps: data-wait time, running loss means, progress lines and MLflow
    metrics every train.log_every_steps (rank 0)."""

    def __init__(self, cfg: ExperimentConfig, stage: int, state: TrainingState, world: int, rank: int,
                 mlflow: dict | None, total_steps: int):
        self.cfg, self.stage, self.state, self.world, self.rank = cfg, stage, state, world, rank
        self.total_steps, self.first_step = total_steps, state.step
        self.logger = MetricLogger(mlflow["tracking_uri"], mlflow["run_id"]) if mlflow and rank == 0 else None
        self.sums: dict[str, torch.Tensor] = {}  # on the device: no host sync until a logging step
        self.count = 0
        self.wait = self.busy = 0.0  # seconds in this logging interval
        self.loop_start = self.interval_start = time.perf_counter()
        # whole-run rates are "steady": from the first batch's arrival (stream start-up excluded) to the end
        self.first_batch_at: float | None = None
        self.loop_end: float | None = None
        self.steady_wait = 0.0
        self.last_metrics: dict[str, float] = {}

    def timed(self, batches):
        """Yield batches, timing how long each one took to arrive (data wait) vs everything else."""
        iterator = iter(batches)
        mark = time.perf_counter()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                self.loop_end = time.perf_counter()
                return
            arrived = time.perf_counter()
            self.wait += arrived - mark
            if self.first_batch_at is None:
                self.first_batch_at = arrived
            else:
                self.steady_wait += arrived - mark
            yield batch
            mark = time.perf_counter()
            self.busy += mark - arrived

    def after_step(self, terms: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0) + value.float()
        self.count += 1
        if self.state.step % self.cfg.train.log_every_steps == 0 or self.state.step == self.total_steps:
            self.flush(optimizer)

    def flush(self, optimizer: torch.optim.Optimizer) -> None:
        if self.count == 0:
            return
        elapsed = max(time.perf_counter() - self.interval_start, 1e-9)
        metrics = {k: float(v) / self.count for k, v in self.sums.items()}
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(optimizer.param_groups)}
        metrics.update({
            "lr": lrs.get("main", next(iter(lrs.values()))),
            "samples_per_s": self.count * self.cfg.train.batch_size * self.world / elapsed,
            "steps_per_s": self.count / elapsed,
            "data_wait_fraction": self.wait / max(self.wait + self.busy, 1e-9),
            "epoch": float(self.state.sampler.epoch),
        })
        if "backbone" in lrs:
            metrics["lr_backbone"] = lrs["backbone"]
        self.last_metrics = metrics
        if self.rank == 0:
            say(self.progress_line(metrics))
            if self.logger:
                self.logger.log(metrics, self.state.step)
        self.sums.clear()
        self.count, self.wait, self.busy = 0, 0.0, 0.0
        self.interval_start = time.perf_counter()

    def progress_line(self, m: dict[str, float]) -> str:
        terms = ("l1", "giou", "iou") if self.stage == 1 else ("bce", "accuracy")
        done = self.state.step - self.first_step
        rate = done / max(time.perf_counter() - self.loop_start, 1e-9)
        eta = (self.total_steps - self.state.step) / rate if rate > 0 else float("nan")
        epochs = self.cfg.train.stage(self.stage).epochs
        return (f"stage {self.stage} | step {self.state.step}/{self.total_steps} | epoch "
                f"{min(self.state.sampler.epoch + 1, epochs)}/{epochs} | loss {m['loss']:.4f} ("
                + ", ".join(f"{k} {m[k]:.3f}" for k in terms if k in m)
                + f") | lr {m['lr']:.1e} | {m['samples_per_s']:.1f} samples/s | data wait {m['data_wait_fraction']:.0%}"
                f" | ETA {_duration(eta)}")

    def log_resume(self) -> None:
        s = self.state
        if self.rank == 0:
            say(f"stage {self.stage}: resumed from the checkpoint at step {s.step} (epoch {s.sampler.epoch}, "
                f"{s.sampler.samples_in_epoch} samples into it)")
            if self.logger:
                self.logger.log({"resumed_from_step": float(s.step)}, s.step)

    def report_metrics(self, complete: bool) -> dict[str, float]:
        """What goes to Ray with each checkpoint: the position (read back by the driver and the stream
        factory to resume) and the latest loss means."""
        return {**self.last_metrics, "stage": self.stage, "step": self.state.step, **self.state.sampler.to_dict(),
                "stage_complete": complete, "run_steps_per_s": self.steps_per_s,
                "run_data_wait_fraction": self.data_wait_fraction, "startup_s": self.startup_s,
                "torch_threads": torch.get_num_threads()}

    def _span(self) -> float:
        now = time.perf_counter()
        return max((self.loop_end or now) - (self.first_batch_at or now), 1e-9)

    @property
    def steps_per_s(self) -> float:
        """Steps of this worker run per second, from the first batch's arrival to the end of the stream."""
        return (self.state.step - self.first_step) / self._span()

    @property
    def data_wait_fraction(self) -> float:
        """Share of that time spent waiting for the next batch."""
        return self.steady_wait / self._span()

    @property
    def startup_s(self) -> float:
        """Seconds from the loop's start to the first batch (stream start-up)."""
        return (self.first_batch_at or time.perf_counter()) - self.loop_start

    def finish(self) -> None:
        if self.rank == 0:
            say(f"stage {self.stage}: {self.state.step - self.first_step} steps in this run, {self.steps_per_s:.2f} "
                f"steps/s, data wait {self.data_wait_fraction:.0%} (first batch after {self.startup_s:.1f}s)")


def say(line: str) -> None:
    """One progress line on the driver's console. Ray Train's patched `print` also tees to a wrapped
    sys.stdout, which shows every line twice; the process's own stdout is forwarded once."""
    stream = sys.__stdout__ or sys.stdout
    stream.write(line + "\n")
    stream.flush()


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
