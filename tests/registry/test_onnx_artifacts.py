"""A registered version carries its ONNX graphs: `models:/stark/N` tracks on ONNX Runtime with them."""
from __future__ import annotations

import torch

from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.model_loading import load_model
from stark.platform.track.onnx_folder import find_exported, read_exported


def test_a_registered_version_carries_verified_onnx_graphs_of_its_weights(tmp_path, monkeypatch):
    from stark.jobs.register import register

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = load_config("stark_tiny", [f"mlflow.tracking_uri={uri}"])
    torch.manual_seed(3)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(str(checkpoint), make_checkpoint(build_stark(cfg.model), to_dict(cfg),
                                                     tracker={"update_interval": 9}))
    version = register(cfg, str(checkpoint), log=lambda *_: None)
    loaded = load_model(f"models:/{cfg.registry.model_name}/{version.version}", tracking_uri=uri)
    exported = read_exported(find_exported(loaded.artifacts))  # raises if a graph does not match its sha256
    assert exported.tracker["update_interval"] == 9
    assert version.tags["stark.onnx.track_sha256"] == exported.manifest["graphs"]["track"]["sha256"]
