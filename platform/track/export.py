"""`stark export`'s writer: the folded-BatchNorm inference copy of a model as the two ONNX graphs and the JSON
of an export folder (onnx_folder.py says what the folder holds and reads it without PyTorch), and the check
the job prints, ONNX Runtime against PyTorch on seeded crops.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from ...model.config import ModelConfig
from ...model.inference import inference_copy
from ...model.onnx_graphs import (DEFAULT_OPSET, TEMPLATE_INPUTS, TEMPLATE_OUTPUTS, example_crops, export_graphs,
                                  track_input_names, track_output_names)
from ...model.stark import STARK
from ..image_norm import IMAGENET_MEAN, IMAGENET_STD
from ..storage import write_file_atomic
from .config import TrackerSettings
from .onnx_folder import FORMAT, GRAPH_FILES, MANIFEST_FILE, ExportedTracker, find_exported, read_exported
from .onnx_tracker import OnnxTracker


def export_tracker(model: STARK, model_cfg: ModelConfig, settings: TrackerSettings, folder: str | os.PathLike,
                   opset: int = DEFAULT_OPSET, fp16: bool = False, source: str = "") -> ExportedTracker:
    """Export the folded-BatchNorm inference copy of `model` into `folder` (created if missing)."""
    import onnx  # the export's own dependency; imported here so that tracking with PyTorch does not need it

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graphs = export_graphs(inference_copy(model, channels_last=False), model_cfg, opset, fp16)
    for data in graphs.values():
        onnx.checker.check_model(onnx.load_from_string(data))
    described = {}
    for name, data in graphs.items():
        path = write_file_atomic(folder / GRAPH_FILES[name], data)
        inputs, outputs = ((TEMPLATE_INPUTS, TEMPLATE_OUTPUTS) if name == "template" else
                           (track_input_names(model_cfg.num_templates), track_output_names(model.score_head is not None)))
        described[name] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                           "inputs": list(inputs), "outputs": list(outputs)}
    manifest = {
        "format": FORMAT,
        "source": source,
        "model": dataclasses.asdict(model_cfg),
        "tracker": dataclasses.asdict(settings),  # the settings stored with the model, over the config's
        "input": {  # how crops become graph input: ((pixel / 255) - mean) / std per RGB channel, NCHW
            "layout": "NCHW", "channels": "RGB", "dtype": "float32", "scale": 1 / 255,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "mask": "bool [B, H, W], True where the crop is padding",
            "template_size": model_cfg.template_size, "search_size": model_cfg.search_size,
            "template_factor": model_cfg.template_factor, "search_factor": model_cfg.search_factor,
        },
        "output": {"boxes": "[B, 4] cxcywh, normalised to the search crop",
                   "score": "[B] sigmoid of the score head (STARK-ST); the target is present when >= "
                            "tracker.present_threshold"},
        "graphs": described,
        "opset": opset,
        "precision": "fp16" if fp16 else "fp32",
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    write_file_atomic(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return read_exported(folder)


def exported_for(model: STARK, model_cfg: ModelConfig, settings: TrackerSettings, artifacts: Path | None,
                 scratch: str | os.PathLike, log=print) -> ExportedTracker:
    """The graphs a registered MLflow version carries (under `artifacts`), else a fresh export of `model`
    into `scratch`. Either way the tracker loop runs with `settings`, not the JSON's."""
    found = find_exported(artifacts) if artifacts is not None else None
    if found is not None:
        exported = read_exported(found)
        log(f"ONNX graphs of the registered version: {found}")
        return exported
    log(f"exporting the model to ONNX in {scratch}")
    return export_tracker(model, model_cfg, settings, scratch)




def graph_differences(model: STARK, tracker: OnnxTracker, batch: int = 3) -> dict[str, float]:
    """Largest |ONNX Runtime - PyTorch inference copy| over seeded crops (partly padded) at batch `batch`:
    boxes (in units of the search crop) and scores; NaN for scores without a score head."""
    cfg = tracker.cfg
    template, template_mask, search, search_mask = example_crops(cfg, batch)
    reference = inference_copy(model, channels_last=False)
    with torch.inference_mode():
        tokens = reference.forward_backbone(template, template_mask)
        out = reference.forward_search([tokens] * cfg.num_templates, search, search_mask)
    got_tokens = tracker._forward_templates(template.numpy(), template_mask.numpy())
    boxes, scores = tracker._forward_search([got_tokens] * cfg.num_templates, search.numpy(), search_mask.numpy())
    result = {"boxes": float(np.abs(boxes - out["pred_boxes"].numpy()).max()),
              "tokens": float(np.abs(got_tokens.feat - tokens.feat.numpy()).max()),
              "score": math.nan}
    if "pred_logits" in out:
        result["score"] = float(np.abs(scores - out["pred_logits"].sigmoid().numpy()).max())
    return result


def quantize_track_graph(exported: ExportedTracker, folder: str | os.PathLike, per_channel: bool = True
                         ) -> ExportedTracker:
    """A copy of an fp32 export folder in `folder` whose `track` graph has int8 weights (ONNX Runtime's dynamic
    quantisation: MatMul weights quantised ahead, activations per call); the template graph, run
    once per template, stays as it is. For the latency benchmark: `stark export` itself writes fp32 or fp16."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if exported.manifest["precision"] != "fp32":
        raise ValueError(f"{exported.folder}: int8 starts from an fp32 export, not {exported.manifest['precision']}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(json.dumps(exported.manifest))
    write_file_atomic(folder / GRAPH_FILES["template"], exported.graph_path("template").read_bytes())
    staging = folder / f".{GRAPH_FILES['track']}.int8"
    # MatMul only (transformer, heads' linear layers): the exported convolutions' weights reach Conv through other
    # nodes (not as initializers), which ONNX Runtime's dynamic quantiser refuses; the backbone stays fp32
    quantize_dynamic(exported.graph_path("track"), staging, op_types_to_quantize=["MatMul"], per_channel=per_channel,
                     weight_type=QuantType.QInt8)
    data = staging.read_bytes()
    write_file_atomic(folder / GRAPH_FILES["track"], data)
    staging.unlink()
    manifest["graphs"]["track"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    manifest["precision"] = "int8 track graph (dynamic quantisation)"
    write_file_atomic(folder / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
    return read_exported(folder)
