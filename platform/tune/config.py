"""Typed configuration of `tune`: the search space over update_interval x score_threshold, the searcher,
early stopping and trial resources."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TuneConfig:
    search: Literal["grid", "random", "optuna"] = "grid"  # optuna = model-based (TPE) via ray.tune.search.optuna
    update_intervals: list[int] = field(default_factory=lambda: [1, 5, 10, 25, 50, 100, 200])  # grid values
    score_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])  # grid values
    update_interval_range: list[int] = field(default_factory=lambda: [1, 300])  # random/optuna bounds
    score_threshold_range: list[float] = field(default_factory=lambda: [0.0, 1.0])
    num_samples: int = 16  # trials for random/optuna (a grid runs each point once)
    metric: Literal["auto", "ao", "auc"] = "auto"  # auto: AO on GOT-10k data, success AUC otherwise
    scheduler: Literal["asha", "none"] = "asha"  # early stopping over sequence chunks
    chunk_sequences: int = 4  # sequences per reported chunk
    grace_chunks: int = 1  # ASHA: chunks every trial gets before it may be stopped
    reduction_factor: int = 2  # ASHA: keep 1/reduction_factor at each rung
    reuse: bool = True  # share the settings-independent prefix of every sequence
    batch_size: int = 8  # sequences per batched forward inside a trial
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent_trials: int = 0  # 0 = as many as resources allow
    storage_path: str | None = None  # Tune's experiment folder (resume state lives here); None: <home>/tune
    seed: int = 0

    def validate(self) -> None:
        if not self.update_intervals or min(self.update_intervals) < 1:
            raise ValueError("tune.update_intervals: a non-empty list of integers >= 1")
        if not self.score_thresholds or not all(0.0 <= t <= 1.0 for t in self.score_thresholds):
            raise ValueError("tune.score_thresholds: a non-empty list of values in [0, 1]")
        lo, hi = self.update_interval_range
        if not 1 <= lo <= hi:
            raise ValueError("tune.update_interval_range: [low, high] with 1 <= low <= high")
        lo_t, hi_t = self.score_threshold_range
        if not 0.0 <= lo_t <= hi_t <= 1.0:
            raise ValueError("tune.score_threshold_range: [low, high] within [0, 1]")
        for key in ("num_samples", "chunk_sequences", "grace_chunks", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"tune.{key} must be >= 1")
        if self.reduction_factor < 2:
            raise ValueError("tune.reduction_factor must be >= 2")
