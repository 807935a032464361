"""The STARK tracker on ONNX Runtime: StarkTracker's loop (crops, normalisation, the template update rule,
batching, resume points) with its two network calls run by ONNX Runtime sessions over an exported tracker
(platform/track/export.py). Template tokens stay CPU tensors between the calls (zero-copy numpy views).

Providers: CPUExecutionProvider; with device "cuda", CUDAExecutionProvider first when this onnxruntime
build has it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...model.inference import inference_copy
from ...model.onnx_graphs import example_crops
from ...model.stark import STARK, Tokens
from .config import TrackerSettings
from .export import ExportedTracker
from .tracker import StarkTracker

CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime providers for a device setting: "cpu" -> CPU; "cuda[:N]" -> CUDA then CPU."""
    import onnxruntime as ort

    if not str(device).startswith("cuda"):
        return [CPU_PROVIDER]
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise ValueError(f"device {device!r}: this onnxruntime has no {CUDA_PROVIDER} "
                         f"(available: {ort.get_available_providers()}); install onnxruntime-gpu")
    return [CUDA_PROVIDER, CPU_PROVIDER]


class OnnxTracker(StarkTracker):
    """Tracks with the graphs of `exported`; same interface and boxes as StarkTracker (up to float rounding)."""

    def __init__(self, exported: ExportedTracker, settings: TrackerSettings, device: str = "cpu",
                 threads: int | None = None):
        import onnxruntime as ort

        settings.validate()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # warnings about provider fallbacks are not the user's business
        providers = onnx_providers(device)
        self.template_session = ort.InferenceSession(str(exported.graph_path("template")), options,
                                                     providers=providers)
        self.track_session = ort.InferenceSession(str(exported.graph_path("track")), options, providers=providers)
        self.track_inputs = [i.name for i in self.track_session.get_inputs()]
        self.has_score = len(self.track_session.get_outputs()) > 1
        self.exported = exported
        self.cfg = exported.model_cfg
        self._settings = settings
        self.device = torch.device("cpu")  # where tokens live between calls
        self.memory_format = torch.contiguous_format
        self.amp_dtype = None

    def _forward_templates(self, images: torch.Tensor, mask: torch.Tensor) -> Tokens:
        feat, feat_mask, pos = self.template_session.run(None, {"crop": images.numpy(), "mask": mask.numpy()})
        return Tokens(torch.from_numpy(feat), torch.from_numpy(feat_mask), torch.from_numpy(pos))

    def _forward_search(self, templates: list[Tokens], search: torch.Tensor, search_mask: torch.Tensor
                        ) -> tuple[np.ndarray, np.ndarray]:
        arrays = [np.ascontiguousarray(t.numpy()) for tokens in templates for t in (tokens.feat, tokens.mask, tokens.pos)]
        arrays += [search.numpy(), search_mask.numpy()]
        outputs = self.track_session.run(None, dict(zip(self.track_inputs, arrays)))
        boxes = outputs[0]
        scores = outputs[1] if self.has_score else np.full(len(boxes), math.nan)
        return boxes, scores


def graph_differences(model: STARK, tracker: OnnxTracker, batch: int = 3) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch inference copy| over seeded crops (partly padded) at batch `batch`:
    boxes (in units of the search crop) and scores; NaN for scores without a score head."""
    cfg = tracker.cfg
    template, template_mask, search, search_mask = example_crops(cfg, batch)
    reference = inference_copy(model, channels_last=False)
    with torch.inference_mode():
        tokens = reference.forward_backbone(template, template_mask)
        out = reference.forward_search([tokens] * cfg.num_templates, search, search_mask)
    got_tokens = tracker._forward_templates(template, template_mask)
    boxes, scores = tracker._forward_search([got_tokens] * cfg.num_templates, search, search_mask)
    result = {"boxes": float(np.abs(boxes - out["pred_boxes"].numpy()).max()),
              "tokens": float(np.abs(got_tokens.feat.numpy() - tokens.feat.numpy()).max()),
              "score": math.nan}
    if "pred_logits" in out:
        result["score"] = float(np.abs(scores - out["pred_logits"].sigmoid().numpy()).max())
    return result
