"""The STARK-S / STARK-ST tracker on PyTorch: the loop of loop.py (crops, the template update rule,
batching, resume points) with its two network calls run by an inference copy of the network.
The loop's names (TrackResult, track_many, ...) are importable from here too.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...model.config import ModelConfig
from ...model.inference import inference_copy
from ...model.stark import STARK, Tokens
from .config import TrackerSettings
from .loop import ResumePoint, TrackerLoop, TrackResult, TrackState, should_update, target_present, track_many

__all__ = ["StarkTracker", "ResumePoint", "TrackResult", "TrackState", "should_update", "target_present",
           "track_many"]


class StarkTracker(TrackerLoop):
    """Tracks with an inference copy of `model` (BatchNorm folded, channels-last unless turned off);
    the model passed in is not changed."""

    def __init__(self, model: STARK, model_cfg: ModelConfig, settings: TrackerSettings,
                 device: str | torch.device = "cpu", amp_dtype: torch.dtype | None = None,
                 channels_last: bool = True):
        settings.validate()
        self.model = inference_copy(model, channels_last=channels_last).to(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.cfg = model_cfg
        self._settings = settings
        self.device = torch.device(device)
        self.amp_dtype = amp_dtype

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward_templates(self, images, mask) -> Tokens:
        """Template crops [B, 3, Hz, Wz] (normalised), masks [B, Hz, Wz] -> Tokens with batch B."""
        images = torch.as_tensor(images).to(self.device, memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            return self.model.forward_backbone(images, torch.as_tensor(mask).to(self.device))

    def _forward_search(self, templates: list[Tokens], search, search_mask) -> tuple[np.ndarray, np.ndarray]:
        """-> (boxes [B, 4] cxcywh normalised to the search crop, scores [B]: sigmoid, NaN without a score head)."""
        search = torch.as_tensor(search).to(self.device, memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            out = self.model.forward_search(templates, search, torch.as_tensor(search_mask).to(self.device))
        boxes = out["pred_boxes"].float().cpu().numpy()
        if "pred_logits" in out:
            return boxes, out["pred_logits"].float().sigmoid().cpu().numpy()
        return boxes, np.full(len(boxes), math.nan)

    def _adopt(self, tokens) -> Tokens:
        """Tokens of an earlier run (either engine's) on this tracker's device."""
        return Tokens(*(torch.as_tensor(t) for t in (tokens.feat, tokens.mask, tokens.pos))).to(self.device)
