"""Where a stage's weights start (`train.init_from`, stage 2 from stage 1): everything the checkpoint has,
except a score head that reads other inputs than the config's, which starts fresh (stage 1 never trains
it, stage 2 trains it from scratch)."""
from __future__ import annotations

import torch

from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.train.worker import build_model


def saved_tiny(tmp_path, score_input: str) -> tuple[str, dict]:
    cfg = load_config("stark_tiny", [f"model.head.score_input={score_input}", f"home={tmp_path / 'home'}"])
    torch.manual_seed(1)
    model = build_stark(cfg.model)
    path = str(tmp_path / f"{score_input}.pt")
    save_checkpoint(path, make_checkpoint(model, to_dict(cfg)))
    return path, model.state_dict()


def test_a_score_head_of_another_input_starts_fresh_and_everything_else_comes_from_init_from(tmp_path, capsys):
    path, source = saved_tiny(tmp_path, "query_and_corners")
    cfg = load_config("stark_tiny", ["model.head.score_input=evidence", f"home={tmp_path / 'home'}"])
    torch.manual_seed(0)
    fresh = build_stark(cfg.model).state_dict()
    torch.manual_seed(0)  # as the worker seeds before building
    model = build_model(cfg, stage=2, fresh=True, init_from=path, storage_cfg=None, tracking_uri=None)
    weights = model.state_dict()
    for key, value in weights.items():
        want = fresh[key] if key.startswith("score_head.") else source[key]
        assert torch.equal(value, want), key
    assert "fresh score head" in capsys.readouterr().out


def test_a_score_head_of_the_same_input_is_carried_over(tmp_path):
    path, source = saved_tiny(tmp_path, "evidence")
    cfg = load_config("stark_tiny", [f"home={tmp_path / 'home'}"])
    model = build_model(cfg, stage=2, fresh=True, init_from=path, storage_cfg=None, tracking_uri=None)
    assert all(torch.equal(v, source[k]) for k, v in model.state_dict().items())
