"""The STARK tracker on ONNX Runtime: the loop of loop.py (crops, normalisation, the template update rule,
batching, resume points) with its two network calls run by ONNX Runtime sessions over an exported tracker
(onnx_folder.py). Nothing here imports PyTorch: a registered version's graphs track in a process without it
(`registered_graphs` fetches them from MLflow). Template tokens stay NumPy arrays between the calls.

Providers: CPUExecutionProvider; with device "cuda", CUDAExecutionProvider first when this onnxruntime
build has it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..mlflow_runs import parse_model_uri, resolve_version
from .config import TrackerSettings
from .loop import TrackerLoop
from .onnx_folder import ExportedTracker, find_exported, read_exported

CPU_PROVIDER, CUDA_PROVIDER = "CPUExecutionProvider", "CUDAExecutionProvider"
ONNX_ARTIFACT = "onnx"  # where a registered version keeps its `stark export` folder (registry/versions.py)


@dataclass(frozen=True)
class ArrayTokens:
    """A template's tokens as ONNX Runtime returns them: feat [Lz, B, d], mask [B, Lz] bool, pos [Lz, B, d]."""

    feat: np.ndarray
    mask: np.ndarray
    pos: np.ndarray

    @staticmethod
    def stack(parts: list) -> ArrayTokens:
        """Join along the batch axis (one image's tokens per part, same Lz)."""
        return ArrayTokens(np.concatenate([np.asarray(p.feat) for p in parts], 1),
                           np.concatenate([np.asarray(p.mask) for p in parts], 0),
                           np.concatenate([np.asarray(p.pos) for p in parts], 1))

    def select(self, index: int) -> ArrayTokens:
        """Batch element `index`, keeping a batch axis of 1."""
        return ArrayTokens(self.feat[:, index:index + 1], self.mask[index:index + 1], self.pos[:, index:index + 1])

    def to(self, device) -> ArrayTokens:
        """Host arrays already (the interface of PyTorch's Tokens, which results are moved with)."""
        return self


def onnx_providers(device: str) -> list[str]:
    """ONNX Runtime providers for a device setting: "cpu" -> CPU; "cuda[:N]" -> CUDA then CPU."""
    import onnxruntime as ort

    if not str(device).startswith("cuda"):
        return [CPU_PROVIDER]
    if CUDA_PROVIDER not in ort.get_available_providers():
        raise ValueError(f"device {device!r}: this onnxruntime has no {CUDA_PROVIDER} "
                         f"(available: {ort.get_available_providers()}); install onnxruntime-gpu")
    return [CUDA_PROVIDER, CPU_PROVIDER]


class OnnxTracker(TrackerLoop):
    """Tracks with the graphs of `exported`; same interface and boxes as StarkTracker (up to float rounding).
    threads: ONNX Runtime's intra-op threads (None: its default, one per core)."""

    def __init__(self, exported: ExportedTracker, settings: TrackerSettings, device: str = "cpu",
                 threads: int | None = None):
        import onnxruntime as ort

        settings.validate()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
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

    def _forward_templates(self, images, mask) -> ArrayTokens:
        feat, feat_mask, pos = self.template_session.run(None, {"crop": np.ascontiguousarray(images, np.float32),
                                                                "mask": np.ascontiguousarray(mask, bool)})
        return ArrayTokens(feat, feat_mask, pos)

    def _forward_search(self, templates: list, search, search_mask) -> tuple[np.ndarray, np.ndarray]:
        arrays = [np.ascontiguousarray(t) for tokens in templates for t in (tokens.feat, tokens.mask, tokens.pos)]
        arrays += [np.ascontiguousarray(search, np.float32), np.ascontiguousarray(search_mask, bool)]
        outputs = self.track_session.run(None, dict(zip(self.track_inputs, arrays)))
        boxes = outputs[0]
        scores = outputs[1] if self.has_score else np.full(len(boxes), math.nan)
        return boxes, scores

    def _adopt(self, tokens) -> ArrayTokens:
        return ArrayTokens(np.asarray(tokens.feat), np.asarray(tokens.mask), np.asarray(tokens.pos))


def registered_graphs(uri: str, tracking_uri: str, folder: str | os.PathLike) -> ExportedTracker:
    """The ONNX graphs a registered version carries (`models:/NAME@ALIAS` or `models:/NAME/N`), fetched from
    the MLflow store at `tracking_uri` into `folder` and verified; only the graphs are downloaded, not the
    weights. ValueError when the version has none (registered before it carried them, or with --no-onnx)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    name = parse_model_uri(uri)[0]
    version = resolve_version(client, uri)
    source = client.get_model_version_download_uri(name, version)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{source.rstrip('/')}/artifacts/{ONNX_ARTIFACT}",
                                                    dst_path=str(folder), tracking_uri=tracking_uri)
    except Exception as exc:  # MLflow raises its own exception types for a missing path
        raise ValueError(f"{uri} (version {version}) carries no ONNX graphs: {str(exc).splitlines()[0]}") from exc
    found = find_exported(Path(local))
    if found is None:
        raise ValueError(f"{uri} (version {version}): its {ONNX_ARTIFACT} artifact holds no export folder")
    return read_exported(found)
