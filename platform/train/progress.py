"""What a training worker says while it trains: data-wait and step timers, running loss means, a progress
line with rate and ETA, and the same metrics to MLflow every train.log_every_steps (rank 0 only)."""
from __future__ import annotations

import sys
import time

import torch

from ..console import PROGRESS_MARK
from ..experiment import ExperimentConfig
from ..mlflow_runs import MetricLogger
from .step import TrainingState


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
    sys.stdout, which shows every line twice; the process's own stdout is forwarded once. Marked as the
    platform's own (console.PROGRESS_MARK) inside a Ray worker, so the driver keeps it on the terminal."""
    stream = sys.__stdout__ or sys.stdout
    stream.write((PROGRESS_MARK if _in_ray_worker() else "") + line + "\n")
    stream.flush()


def _in_ray_worker() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized() and ray._private.worker.global_worker.mode == ray.WORKER_MODE


def _duration(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
