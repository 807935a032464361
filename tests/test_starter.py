"""The shipped starter checkpoint: the file its record vouches for, a recipe that validates, and a
network that fits the presets that fine-tune it."""
from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from stark.platform import starter
from stark.platform.experiment import ExperimentConfig, from_dict, load_config
from stark.platform.model_loading import load_model


def test_the_tiny_starter_matches_its_recorded_sha256_and_fits_in_10_mb():
    record = starter.starter_record("stark_tiny")
    path = starter.starter_folder() / record["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    assert path.stat().st_size <= 10 * 1024 * 1024
    assert record["command"].startswith("python -m stark.jobs.make_starter")
    assert record["mlflow"]["runs"]  # the training runs that made it are named


def test_its_recipe_validates_and_builds_the_network_the_presets_fine_tune():
    recipe = from_dict(ExperimentConfig, starter.starter_record("stark_tiny")["recipe"], source="stark_tiny.json")
    recipe.validate()
    for preset in ("stark_tiny", "pipeline_demo"):
        assert load_config(preset).model == recipe.model, preset
    assert load_config("pipeline_demo").train.init_from == "starter:stark_tiny"


def test_it_loads_by_name_and_tracks_a_frame():
    loaded = load_model("starter:stark_tiny", load_config("stark_tiny").model)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # fp16 on disk, fp32 to run
    cfg = loaded.model_cfg
    z = torch.zeros(1, 3, cfg.template_size, cfg.template_size)
    x = torch.zeros(1, 3, cfg.search_size, cfg.search_size)
    zm = torch.zeros(1, cfg.template_size, cfg.template_size, dtype=torch.bool)
    xm = torch.zeros(1, cfg.search_size, cfg.search_size, dtype=torch.bool)
    out = loaded.model.eval()([z, z], [zm, zm], x, xm)
    assert out["pred_boxes"].shape == (1, 4) and torch.isfinite(out["pred_logits"]).all()


def test_a_starter_whose_bytes_changed_is_refused_naming_the_command_that_remakes_it(tmp_path, monkeypatch):
    shutil.copytree(starter.starter_folder(), tmp_path / "starters")
    pt = tmp_path / "starters" / "stark_tiny.pt"
    data = bytearray(pt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the weights
    pt.write_bytes(bytes(data))
    monkeypatch.setattr(starter, "starter_folder", lambda: tmp_path / "starters")
    with pytest.raises(ValueError, match="sha256.*make_starter"):
        starter.resolve_starter("starter:stark_tiny")


def test_an_unknown_starter_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="no such starter.*stark_tiny"):
        starter.resolve_starter("starter:resnet9000")


def test_any_other_model_argument_passes_through_unchanged():
    assert starter.resolve_starter("models:/stark@champion") == "models:/stark@champion"
