"""An exported tracker on disk, as `stark export` writes it (export.py): the `template` and `track` ONNX
graphs (model/onnx_graphs.py) and, beside them, `stark_onnx.json`: what a client outside PyTorch needs to run
the tracker loop around them. Reading a folder needs no PyTorch (onnx_tracker.py runs without it).

    DIR/template.onnx   crop + mask -> template tokens, token mask, positions
    DIR/track.onnx      every template's tokens + search crop + mask -> box (and score)
    DIR/stark_onnx.json model config, tracker settings, input normalisation, graph I/O, sha256 of each graph

Files are written under temporary names and renamed; the JSON comes last, so a folder with a JSON holds
complete graphs. Reading checks each graph against its sha256.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...model.config import ModelConfig
from ..experiment import from_dict
from ..storage import write_file_atomic

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
