"""An exported tracker on disk: the `template` and `track` ONNX graphs (model/onnx_graphs.py) and, beside
them, `stark_onnx.json`: what a client outside PyTorch needs to run the tracker loop around them.

    DIR/template.onnx   crop + mask -> template tokens, token mask, positions
    DIR/track.onnx      every template's tokens + search crop + mask -> box (and score)
    DIR/stark_onnx.json model config, tracker settings, input normalisation, graph I/O, sha256 of each graph

Files are written under temporary names and renamed; the JSON comes last, so a folder with a JSON holds
complete graphs. Reading checks each graph against its sha256.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ...model.config import ModelConfig
from ...model.inference import inference_copy
from ...model.onnx_graphs import (DEFAULT_OPSET, TEMPLATE_INPUTS, TEMPLATE_OUTPUTS, export_graphs,
                                  track_input_names, track_output_names)
from ...model.stark import STARK
from ..experiment import from_dict
from ..image_norm import IMAGENET_MEAN, IMAGENET_STD
from ..storage import write_file_atomic
from .config import TrackerSettings

MANIFEST_FILE = "stark_onnx.json"
GRAPH_FILES = {"template": "template.onnx", "track": "track.onnx"}
FORMAT = "stark-onnx/1"


@dataclass(frozen=True)
class ExportedTracker:
    """A verified export folder: the graphs' paths, the network's config and everything the JSON says."""

    folder: Path
    model_cfg: ModelConfig
    manifest: dict

    def graph_path(self, name: str) -> Path:
        return self.folder / self.manifest["graphs"][name]["file"]

    @property
    def tracker(self) -> dict:
        return dict(self.manifest["tracker"])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def read_exported(folder: str | os.PathLike) -> ExportedTracker:
    """Read an export folder; ValueError when the JSON is missing or a graph does not match its sha256."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {MANIFEST_FILE} (not a `stark export` folder, or an unfinished one)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    for name, graph in manifest["graphs"].items():
        graph_path = folder / graph["file"]
        if not graph_path.is_file() or sha256_of(graph_path) != graph["sha256"]:
            raise ValueError(f"{graph_path}: missing, or its sha256 differs from {MANIFEST_FILE}'s")
    model_cfg = from_dict(ModelConfig, manifest["model"], source=str(path), prefix="model.")
    return ExportedTracker(folder, model_cfg, manifest)


def find_exported(root: str | os.PathLike) -> Path | None:
    """The export folder somewhere under `root` (e.g. a downloaded MLflow model), or None."""
    found = sorted(Path(root).rglob(MANIFEST_FILE))
    return found[0].parent if found else None


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


def exported_files(exported: ExportedTracker) -> dict[str, bytes]:
    """{file name: bytes} of an export folder: how it travels to Ray workers (the object store)."""
    names = [g["file"] for g in exported.manifest["graphs"].values()] + [MANIFEST_FILE]
    return {name: (exported.folder / name).read_bytes() for name in names}


def write_exported_files(files: dict[str, bytes], folder: str | os.PathLike) -> ExportedTracker:
    """The inverse of `exported_files`: the folder again (graphs first, JSON last), verified."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == MANIFEST_FILE):
        write_file_atomic(folder / Path(name).name, files[name])
    return read_exported(folder)
