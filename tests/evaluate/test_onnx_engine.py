"""`stark evaluate ... evaluate.engine=onnx`: the same result files as the PyTorch engine, and the absent
precision/recall in the summary of a split whose sequences have absence labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stark.jobs.evaluate import main as evaluate_main
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.evaluate.results import read_got10k_results
from stark.platform.experiment import ConfigError, load_config, to_dict
from stark.platform.ingest.synthetic import make_sequences, write_got10k


@pytest.fixture(scope="module")
def tree_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_eval")
    sequences = make_sequences(["GOT-10k_Val_000001", "GOT-10k_Val_000002"], 20, (160, 120), seed=1)
    assert any((~s.visible).any() for s in sequences)
    write_got10k(str(root / "got10k"), {"val": sequences})
    cfg = load_config("stark_tiny")
    torch.manual_seed(0)
    save_checkpoint(str(root / "tiny.pt"), make_checkpoint(build_stark(cfg.model), to_dict(cfg)))
    return root


def test_the_onnx_engine_writes_the_torch_engines_results_and_scores_absent_calls(tmp_path, tree_and_model):
    root = tree_and_model
    outs = {}
    for engine in ("torch", "onnx"):
        outs[engine] = tmp_path / engine
        assert evaluate_main(["--config", "stark_tiny", "evaluate.num_workers=0", "--no-mlflow", "--model",
                              str(root / "tiny.pt"), "--data", str(root / "got10k"), "--out", str(outs[engine]),
                              f"evaluate.engine={engine}", "tracker.update_interval=4",
                              "tracker.score_threshold=0.0"]) == 0
    for name in ("GOT-10k_Val_000001", "GOT-10k_Val_000002"):
        boxes = {e: read_got10k_results(out / "got10k", name)[0] for e, out in outs.items()}
        np.testing.assert_allclose(boxes["onnx"], boxes["torch"], atol=1e-2)  # result files hold 4 decimals
    summary = json.loads((outs["onnx"] / "summary.json").read_text())
    assert summary["absence"]["frames"] == 38 and summary["absence"]["absent"] > 0
    assert summary["absence"] == json.loads((outs["torch"] / "summary.json").read_text())["absence"]


def test_an_unknown_engine_is_refused_at_load_time():
    with pytest.raises(ConfigError, match="evaluate.engine"):
        load_config("stark_tiny", ["evaluate.engine=tensorrt"])
