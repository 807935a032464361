"""A registered version carries its ONNX graphs: `models:/stark/N` tracks on ONNX Runtime with them, also in a
process where PyTorch cannot be imported at all."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.ingest.synthetic import make_sequences
from stark.platform.model_loading import load_model
from stark.platform.track.config import TrackerSettings
from stark.platform.track.onnx_folder import find_exported, read_exported
from stark.platform.track.tracker import StarkTracker

STORED = {"update_interval": 3, "score_threshold": 0.0}  # the dynamic template may change every 3rd frame

# Run before anything else in the child: any `import torch` (direct or from a dependency) raises.
NO_TORCH = textwrap.dedent('''
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"PyTorch is blocked in this process (import {name})")
            return None

    sys.meta_path.insert(0, NoTorch())
''')


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A seeded tiny STARK-ST registered in a sqlite MLflow store: (model, config, models:/ URI, tracking URI)."""
    from stark.jobs.register import register

    root = tmp_path_factory.mktemp("registered")
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = load_config("stark_tiny", [f"mlflow.tracking_uri={uri}"])
    torch.manual_seed(3)
    model = build_stark(cfg.model).eval()
    checkpoint = root / "tiny.pt"
    save_checkpoint(str(checkpoint), make_checkpoint(model, to_dict(cfg), tracker=STORED))
    version = register(cfg, str(checkpoint), log=lambda *_: None)
    return model, cfg, version, f"models:/{cfg.registry.model_name}/{version.version}", uri


def test_a_registered_version_carries_verified_onnx_graphs_of_its_weights(registered):
    _, _, version, model_uri, uri = registered
    loaded = load_model(model_uri, tracking_uri=uri)
    exported = read_exported(find_exported(loaded.artifacts))  # raises if a graph does not match its sha256
    assert exported.tracker["update_interval"] == 3
    assert version.tags["stark.onnx.track_sha256"] == exported.manifest["graphs"]["track"]["sha256"]


def test_the_registered_graphs_track_in_a_process_without_pytorch_as_the_pytorch_tracker_does(registered, tmp_path):
    model, cfg, _, model_uri, uri = registered
    (seq,) = make_sequences(["leaving"], 12, (160, 120), seed=5)
    np.save(tmp_path / "frames.npy", seq.frames)
    child = NO_TORCH + textwrap.dedent(f'''
        import numpy as np
        from stark.platform.track.config import TrackerSettings
        from stark.platform.track.onnx_tracker import OnnxTracker, registered_graphs

        exported = registered_graphs({model_uri!r}, {uri!r}, {str(tmp_path / "graphs")!r})
        tracker = OnnxTracker(exported, TrackerSettings(**exported.tracker), threads=1)
        result = tracker.track(list(np.load({str(tmp_path / "frames.npy")!r})), {seq.boxes_xywh[0].tolist()!r})
        np.savez({str(tmp_path / "result.npz")!r}, boxes=result.boxes, scores=result.scores,
                 present=result.present, updates=np.array(result.updates))
        assert "torch" not in sys.modules
    ''')
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (tmp_path / "graphs" / "checkpoint.pt").exists()  # only the graphs were fetched

    got = np.load(tmp_path / "result.npz")
    settings = cfg.tracker_choice.for_model(STORED)  # what the export stored: the preset's, updated by STORED
    assert settings.redetect_after > 0  # the tiny preset re-detects: the graphs' loop does too
    want = StarkTracker(model, cfg.model, settings, channels_last=False).track(list(seq.frames), seq.boxes_xywh[0])
    np.testing.assert_allclose(got["boxes"], want.boxes, atol=1e-2)  # pixels of a 160x120 frame
    np.testing.assert_allclose(got["scores"], want.scores, atol=1e-4)
    assert got["present"].tolist() == want.present.tolist()
    # The seeded random network scores about 0.43, below the preset's redetect_threshold: frame 3 still updates
    # the dynamic template, then after redetect_after missed frames both loops search the whole frame (lost)
    # and, while lost, cut no template, so frames 6 and 9 do not update. Both paths of the loop run here.
    assert np.all(want.scores[1:] < settings.redetect_threshold)
    assert got["updates"].tolist() == want.updates == [3]
