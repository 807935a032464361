"""The training step, in plain PyTorch: optimiser, LR schedule, one step with autocast / GradScaler /
gradient clipping, the data-sampler position, and the training checkpoint. No Ray, no MLflow: the
Ray Train worker (`worker.py`) wraps these, and tests run them in-process.

Official STARK settings (lib/train/base_functions.py, experiments/stark_st*/baseline.yaml): AdamW with
two parameter groups (the backbone at lr * 0.1), weight decay 1e-4, StepLR by epoch (x0.1 at the drop
epoch), global gradient norm clipped to 0.1; stage 1 loss 5 * L1 + 2 * GIoU, stage 2 BCE on the score.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ...model.box_ops import box_cxcywh_to_xyxy, box_iou_xyxy
from ...model.stark import STARK
from ..checkpoint import make_checkpoint, unwrap
from ..data.device_images import network_images
from ..precision import AMP_DTYPES
from .config import StageConfig, TrainConfig

BACKBONE_PREFIX = "backbone.body."
BATCH_KEYS = ("template", "template_mask", "search", "search_mask", "search_box", "label")


# --- optimiser and schedule -----------------------------------------------------------------------
def build_optimizer(model: STARK, stage: int, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the parameters the stage trains: backbone group at lr * multiplier, the rest at lr."""
    params = model.stage_parameters(stage)
    backbone = [p for n, p in params if n.startswith(BACKBONE_PREFIX)]
    rest = [p for n, p in params if not n.startswith(BACKBONE_PREFIX)]
    groups = [{"params": rest, "lr": cfg.lr, "name": "main"}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_multiplier, "name": "backbone"})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, stage_cfg: StageConfig, cfg: TrainConfig
                    ) -> torch.optim.lr_scheduler.StepLR:
    """Stepped once per epoch: lr x lr_drop_factor from epoch `lr_drop_epoch` on."""
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=stage_cfg.lr_drop_epoch, gamma=cfg.lr_drop_factor)


def make_grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling only for fp16 (bf16 has fp32's exponent range); disabled, it is a no-op."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


# --- one step -------------------------------------------------------------------------------------
def model_inputs(batch: dict[str, torch.Tensor]) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """Stream batch -> forward arguments: template [B, T, 3, Hz, Wz] -> T tensors [B, 3, Hz, Wz]."""
    templates = list(batch["template"].unbind(1))  # T x [B, 3, Hz, Wz]
    template_masks = list(batch["template_mask"].unbind(1))  # T x [B, Hz, Wz]
    return templates, template_masks, batch["search"], batch["search_mask"]


def score_labels(out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], score_label: str = "presence"
                 ) -> torch.Tensor:
    """Stage 2 targets [B]: the sample's label ("presence"), or that label and IoU(box, target) > 0.5
    ("box_iou"; the box comes from the frozen stage-1 network, so the label is fixed per sample)."""
    labels = batch["label"].float()
    if score_label == "box_iou":
        iou = box_iou_xyxy(box_cxcywh_to_xyxy(out["pred_boxes"].detach().float()),
                           box_cxcywh_to_xyxy(batch["search_box"].float()))
        labels = labels * (iou > 0.5).float()
    return labels


def stage_loss(loss_fn: nn.Module, stage: int, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
               score_label: str = "presence") -> dict[str, torch.Tensor]:
    if stage == 1:
        return loss_fn(out["pred_boxes"].float(), batch["search_box"].float())
    return loss_fn(out["pred_logits"].float(), score_labels(out, batch, score_label))


def train_step(model: nn.Module, loss_fn: nn.Module, stage: int, batch: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, amp: str = "none",
               grad_clip: float = 0.0, score_label: str = "presence") -> dict[str, torch.Tensor]:
    """Forward under autocast, loss in fp32, backward (scaled for fp16), clip, optimiser step.

    `batch` is on the model's device, in the stream's format: uint8 crops get their photometric
    augmentation and normalisation here, on that device, for the whole batch (`device_images`). Returns
    the loss terms (detached tensors, so that the caller decides when to synchronise) plus 'grad_norm'
    when clipping."""
    batch = network_images(batch)
    device_type = batch["search"].device.type
    dtype = AMP_DTYPES[amp]
    with torch.autocast(device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(*model_inputs(batch))
    terms = stage_loss(loss_fn, stage, out, batch, score_label)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(terms["loss"]).backward()
    result = {k: v.detach() for k, v in terms.items()}
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        result["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
    scaler.step(optimizer)
    scaler.update()
    return result


# --- where the stream is --------------------------------------------------------------------------
@dataclass
class SamplerState:
    """The data-sampler position within a stage: global samples consumed (over all workers) since the
    stage began. Epoch e holds stream samples [e * samples_per_epoch, (e + 1) * samples_per_epoch), each
    drawn from (seed, epoch, index in epoch), so a position names exactly where the stream resumes."""

    samples_per_epoch: int
    samples_seen: int = 0

    @property
    def epoch(self) -> int:
        return self.samples_seen // self.samples_per_epoch

    @property
    def samples_in_epoch(self) -> int:
        return self.samples_seen % self.samples_per_epoch

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "samples_in_epoch": self.samples_in_epoch, **asdict(self)}

    @classmethod
    def from_dict(cls, state: dict, samples_per_epoch: int) -> "SamplerState":
        """Resume by (epoch, samples into it), so a changed samples_per_epoch still starts at that epoch."""
        return cls(samples_per_epoch, int(state["epoch"]) * samples_per_epoch + int(state["samples_in_epoch"]))


def stage_end_sample(stage_cfg: StageConfig, samples_per_epoch: int) -> int:
    return stage_cfg.epochs * samples_per_epoch


def remaining_steps(samples_seen: int, end_sample: int, num_workers: int, batch_size: int) -> int:
    """Optimiser steps left: the stream is split evenly over workers and each drops its last partial batch."""
    return max(0, end_sample - samples_seen) // num_workers // batch_size


def advance_schedule(scheduler: torch.optim.lr_scheduler.LRScheduler, epoch: int) -> None:
    """Step the per-epoch scheduler until it has seen `epoch` epochs."""
    with warnings.catch_warnings():  # deliberate when catching up to a resumed epoch before any step
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        while scheduler.last_epoch < epoch:
            scheduler.step()


# --- checkpoint -----------------------------------------------------------------------------------
@dataclass
class TrainingState:
    stage: int
    step: int  # optimiser steps taken in this stage
    sampler: SamplerState


def training_checkpoint(model: nn.Module, config: dict, state: TrainingState, optimizer: torch.optim.Optimizer,
                        scheduler, scaler: torch.amp.GradScaler) -> dict:
    """A platform checkpoint that also resumes training (optimizer, scheduler, scaler, step, sampler)."""
    return make_checkpoint(model, config, stage=state.stage, step=state.step, epoch=state.sampler.epoch,
                           sampler=state.sampler.to_dict(), optimizer=optimizer.state_dict(),
                           scheduler=scheduler.state_dict(), scaler=scaler.state_dict())


def final_checkpoint(model: nn.Module, config: dict, state: TrainingState, metrics: dict[str, float]) -> dict:
    """What evaluation loads: weights, config and where training stopped, without optimiser state."""
    return make_checkpoint(model, config, stage=state.stage, step=state.step, epoch=state.sampler.epoch,
                           sampler=state.sampler.to_dict(), metrics=metrics)


def restore_training(content: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                     scaler: torch.amp.GradScaler, samples_per_epoch: int) -> TrainingState:
    unwrap(model).load_state_dict(content["model"])
    optimizer.load_state_dict(content["optimizer"])
    # the schedule comes from the config the stage resumes under, the position from the checkpoint: a
    # checkpoint's own step_size/gamma would silently keep an lr_drop_epoch the config has changed
    configured = {key: getattr(scheduler, key) for key in ("step_size", "gamma")}
    scheduler.load_state_dict(content["scheduler"])
    scheduler.__dict__.update(configured)
    scaler.load_state_dict(content["scaler"])
    return TrainingState(int(content["stage"]), int(content["step"]),
                         SamplerState.from_dict(content["sampler"], samples_per_epoch))
