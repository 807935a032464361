"""The network as two ONNX graphs: `template` (a crop -> its tokens) and `track` (every template's tokens +
a search crop -> box, score). The tracker's loop (crops, template updates) stays outside the graphs.

Graph interfaces (B is dynamic; every float tensor is float32, whatever the precision inside):

  template:  crop [B, 3, Hz, Wz] (normalised), mask [B, Hz, Wz] bool (True = padding)
             -> feat [Lz, B, d], feat_mask [B, Lz] bool, pos [Lz, B, d]
  track:     t{i}_feat [Lz, B, d], t{i}_mask [B, Lz], t{i}_pos [Lz, B, d] for each template i,
             search [B, 3, Hx, Wx], search_mask [B, Hx, Wx]
             -> boxes [B, 4] cxcywh normalised to the search crop, score [B] = sigmoid(logit) (STARK-ST only)

Export uses torch's TorchScript-based exporter (`dynamo=False`): it needs nothing beyond torch and onnx,
and traces this network with a dynamic batch as it is. Checked with torch 2.13: still supported, with only a
DeprecationWarning (silenced below); the torch.export-based exporter (`dynamo=True`, the default since 2.9)
would add onnxscript as a dependency and is not needed for these two graphs. Pass the folded-BatchNorm inference copy
(model/inference.py, channels_last=False). fp16: the weights and activations inside are float16, the
interface stays float32 (a cast at each input and output), so one tracker drives either graph.
"""
from __future__ import annotations

import copy
import io
import warnings

import torch
from torch import nn

from stark.model.config import ModelConfig
from stark.model.stark import STARK, Tokens

TEMPLATE_INPUTS = ("crop", "mask")
TEMPLATE_OUTPUTS = ("feat", "feat_mask", "pos")
DEFAULT_OPSET = 17  # LayerNormalization is a single op from 17 on


def track_input_names(num_templates: int) -> list[str]:
    names = [f"t{i}_{part}" for i in range(num_templates) for part in ("feat", "mask", "pos")]
    return names + ["search", "search_mask"]


def track_output_names(has_score: bool) -> list[str]:
    return ["boxes", "score"] if has_score else ["boxes"]


class TemplateGraph(nn.Module):
    """crop [B, 3, Hz, Wz], mask [B, Hz, Wz] -> (feat [Lz, B, d], feat_mask [B, Lz], pos [Lz, B, d])."""

    def __init__(self, model: STARK, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, crop: torch.Tensor, mask: torch.Tensor):
        tokens = self.model.forward_backbone(crop.to(self.dtype), mask)
        return tokens.feat.float(), tokens.mask, tokens.pos.float()


class TrackGraph(nn.Module):
    """(feat, mask, pos) of every template, search [B, 3, Hx, Wx], search_mask [B, Hx, Wx]
    -> boxes [B, 4] cxcywh normalised (and score [B], sigmoid of the logit, for STARK-ST)."""

    def __init__(self, model: STARK, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, *inputs: torch.Tensor):
        *flat, search, search_mask = inputs
        templates = [Tokens(flat[i].to(self.dtype), flat[i + 1], flat[i + 2].to(self.dtype))
                     for i in range(0, len(flat), 3)]
        out = self.model.forward_search(templates, search.to(self.dtype), search_mask)
        boxes = out["pred_boxes"].float()
        if "pred_logits" in out:
            return boxes, out["pred_logits"].float().sigmoid()
        return boxes


def example_crops(cfg: ModelConfig, batch: int = 2) -> tuple[torch.Tensor, ...]:
    """Seeded tracing inputs (template crop, mask, search crop, mask), partly padded."""
    gen = torch.Generator().manual_seed(0)
    zs, xs = cfg.template_size, cfg.search_size
    template = torch.randn(batch, 3, zs, zs, generator=gen)
    template_mask = torch.zeros(batch, zs, zs, dtype=torch.bool)
    template_mask[:, :, : zs // 4] = True
    search = torch.randn(batch, 3, xs, xs, generator=gen)
    search_mask = torch.zeros(batch, xs, xs, dtype=torch.bool)
    search_mask[0, : xs // 3] = True
    return template, template_mask, search, search_mask


def _export(module: nn.Module, args: tuple, input_names, output_names, dynamic_axes, opset: int) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript-based exporter is deprecated in favour of torch.export's, which needs onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module.eval(), args, buffer, dynamo=False, opset_version=opset,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes, do_constant_folding=True)
    return buffer.getvalue()


def export_graphs(model: STARK, cfg: ModelConfig, opset: int = DEFAULT_OPSET, fp16: bool = False
                  ) -> dict[str, bytes]:
    """{'template': ONNX bytes, 'track': ONNX bytes} of an eval-mode (inference-copy) model; `model` is
    not changed (the export works on a copy: exporting flips train/eval modes on what it is given)."""
    dtype = torch.float16 if fp16 else torch.float32
    net = copy.deepcopy(model).eval().to(dtype)
    # the soft-argmax runs in fp32 (model/corner_head.py); its cell coordinates (k / S) stay exact too
    net.box_head.coord_x, net.box_head.coord_y = model.box_head.coord_x.float(), model.box_head.coord_y.float()
    if net.score_input == "evidence":  # the evidence is computed in fp32 (model/score_evidence.py): so is its MLP
        net.score_head = copy.deepcopy(model.score_head).float()
    template, template_mask, search, search_mask = example_crops(cfg)
    template_graph, track_graph = TemplateGraph(net, dtype), TrackGraph(net, dtype)
    with torch.no_grad():
        feat, feat_mask, pos = template_graph(template, template_mask)
    graphs = {"template": _export(
        template_graph, (template, template_mask), TEMPLATE_INPUTS, TEMPLATE_OUTPUTS,
        {"crop": {0: "batch"}, "mask": {0: "batch"}, "feat": {1: "batch"}, "feat_mask": {0: "batch"},
         "pos": {1: "batch"}}, opset)}
    inputs = track_input_names(cfg.num_templates)
    outputs = track_output_names(net.score_head is not None)
    axes = {name: {1 if name.endswith(("_feat", "_pos")) else 0: "batch"} for name in inputs + outputs}
    graphs["track"] = _export(track_graph, (feat, feat_mask, pos) * cfg.num_templates + (search, search_mask),
                              inputs, outputs, axes, opset)
    return graphs
