"""Typed configuration of `stark train`: the two training stages, the optimiser, the Ray Train workers,
checkpoints and where the run is stored. Defaults are the official STARK-ST settings
(experiments/stark_st1/baseline.yaml, stark_st2/baseline.yaml)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class StageConfig:
    epochs: int = 500  # an epoch is data.samples_per_epoch samples, over all workers
    lr_drop_epoch: int = 400  # the learning rate is multiplied by train.lr_drop_factor after this many epochs

    def validate(self, key: str) -> None:
        if self.epochs < 1:
            raise ValueError(f"{key}.epochs must be >= 1")
        if self.lr_drop_epoch < 1:
            raise ValueError(f"{key}.lr_drop_epoch must be >= 1")


@dataclass
class TrainConfig:
    stages: list[int] = field(default_factory=lambda: [1, 2])  # 1 = boxes (L1 + GIoU), 2 = score head (BCE)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=500, lr_drop_epoch=400))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=50, lr_drop_epoch=40))
    # Weights the first listed stage starts from (a platform checkpoint, an official STARK file or an
    # MLflow model URI). None: stage 1 starts from model.backbone.weights, stage 2 from this run's
    # <storage_path>/<name>/stage1/final.pt.
    init_from: str | None = None
    # Stage 2's label for a sample. "presence" (official): 1 when the search crop holds the target.
    # "box_iou": 1 when it does AND the (frozen) stage-1 box has IoU > 0.5 with it, so the score says
    # whether the box is right, which is what a template update and "target absent" need to know.
    score_label: Literal["presence", "box_iou"] = "presence"
    lr: float = 1e-4  # AdamW, every trained parameter outside the backbone
    backbone_lr_multiplier: float = 0.1  # backbone.body.* trains at lr * this (official: 1e-5)
    weight_decay: float = 1e-4
    lr_drop_factor: float = 0.1  # StepLR gamma
    grad_clip: float = 0.1  # max global gradient norm; 0 = no clipping
    batch_size: int = 16  # samples per step per worker (official: 16 per GPU)
    num_workers: int = 1  # Ray Train workers; DDP across them (gloo on CPU, NCCL on GPU)
    cpus_per_worker: float = 1.0  # Ray CPUs each training worker reserves
    # intra-op threads of each training worker; 0 = one per reserved CPU (Ray sets OMP_NUM_THREADS). More
    # than reserved lets the step use the cores the decode workers leave idle (a small CPU machine)
    torch_threads: int = 0
    use_gpu: bool = False  # one GPU per worker, NCCL, device cuda
    amp: Literal["none", "bf16", "fp16"] = "none"  # torch.autocast dtype; fp16 adds a GradScaler
    checkpoint_every_steps: int = 500  # a resumable checkpoint to storage every N optimiser steps (and at the end)
    keep_checkpoints: int = 2  # resumable checkpoints kept per stage (the final.pt files are always kept)
    max_failures: int = 3  # worker-group restarts Ray Train makes (from the latest checkpoint) before failing
    # local folder or s3://bucket/prefix; the run lives in <storage_path>/<name>. None: <home>/runs (platform/home.py)
    storage_path: str | None = None
    seed: int = 0  # model initialisation and the data stream's sampling
    log_every_steps: int = 50  # a progress line and MLflow metrics every N steps

    def validate(self) -> None:
        if not self.stages or any(s not in (1, 2) for s in self.stages) or self.stages != sorted(set(self.stages)):
            raise ValueError(f"train.stages: {self.stages} must be [1], [2] or [1, 2]")
        self.stage1.validate("train.stage1")
        self.stage2.validate("train.stage2")
        for key in ("lr", "backbone_lr_multiplier", "lr_drop_factor", "cpus_per_worker"):
            if getattr(self, key) <= 0:
                raise ValueError(f"train.{key} must be > 0")
        for key in ("weight_decay", "grad_clip"):
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key} must be >= 0")
        for key in ("batch_size", "num_workers", "checkpoint_every_steps", "keep_checkpoints", "log_every_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1")
        if self.torch_threads < 0:
            raise ValueError("train.torch_threads must be >= 0 (0 = one per reserved CPU)")
        if self.max_failures < -1:
            raise ValueError("train.max_failures must be >= 0 (or -1 for unlimited)")
        if self.score_label not in ("presence", "box_iou"):
            raise ValueError(f"train.score_label: {self.score_label!r} is not presence or box_iou")
        if self.amp not in ("none", "bf16", "fp16"):
            raise ValueError(f"train.amp: {self.amp!r} is not one of none, bf16, fp16")
        if self.storage_path is not None and not self.storage_path:
            raise ValueError("train.storage_path must be a folder or s3:// URI")

    def stage(self, stage: int) -> StageConfig:
        return {1: self.stage1, 2: self.stage2}[stage]
