"""A tiny STARK-ST that tracks, for tests that need one (promotion of a clearly better model, tuning with
settings that matter): the shipped starter (`starter:stark_tiny`, pretrained on generated footage),
fine-tuned for real on generated data.

It runs the plain-PyTorch path of training (the same train_step, optimiser and data processing the
Ray Train job uses) in this process, so it costs well under a minute instead of a cluster start. From
random weights the same steps would give a model that tracks worse than a box that never moves.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from stark.model.losses import build_loss
from stark.model.stark import build_stark
from stark.platform.checkpoint import make_checkpoint, save_checkpoint
from stark.platform.experiment import load_config, to_dict
from stark.platform.data.decode import UnitDecoder
from stark.platform.data.stream import crop_geometry, make_batch
from stark.platform.data.frame_index import load_frame_index
from stark.platform.ingest.run import ingest
from stark.platform.model_loading import load_model
from stark.platform.ingest.synthetic import make_sequences, write_got10k
from stark.platform.train.step import build_optimizer, make_grad_scaler, train_step


def train_tiny(workdir: Path, stage1_steps: int = 12, stage2_steps: int = 8, batch: int = 8,
               seed: int = 0) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as tests/test_training_step.py: 2 threads on a busy 2-core machine ran 6x slower
    try:
        return _train_tiny(workdir, stage1_steps, stage2_steps, batch, seed)
    finally:
        torch.set_num_threads(threads)


def _train_tiny(workdir: Path, stage1_steps: int, stage2_steps: int, batch: int, seed: int) -> Path:
    cfg = load_config("stark_tiny", ["train.lr=0.0001", "data.samples_per_epoch=100000"])
    names = [f"GOT-10k_Train_{i:06d}" for i in range(1, 9)]
    write_got10k(str(workdir / "src"), {"train": make_sequences(names, 60, (160, 120), seed=seed + 100)})
    ingest(str(workdir / "src"), str(workdir / "clips"), cfg.ingest, out=io.StringIO())
    index = load_frame_index([str(workdir / "clips")], cfg.data, cfg.model.num_templates)
    decoder = UnitDecoder(index, None, cache_size=8)
    geometry = crop_geometry(cfg.model)

    torch.manual_seed(seed)
    model = build_stark(cfg.model)
    model.load_state_dict(load_model("starter:stark_tiny", cfg.model).model.state_dict())
    for stage, steps in ((1, stage1_steps), (2, stage2_steps)):
        model.train_stage(stage)
        optimizer = build_optimizer(model, stage, cfg.train)
        scaler = make_grad_scaler("none", torch.device("cpu"))
        loss_fn = build_loss(stage)
        for step in range(steps):
            arrays = make_batch(index, list(range(step * batch, (step + 1) * batch)), cfg.data, geometry, stage,
                                seed, 0, decoder)
            tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
            train_step(model, loss_fn, stage, tensors, optimizer, scaler, grad_clip=cfg.train.grad_clip,
                       score_label=cfg.train.score_label)
    path = workdir / "trained_tiny.pt"
    save_checkpoint(str(path), make_checkpoint(model.eval(), to_dict(cfg), tracker={"update_interval": 10,
                                                                                   "score_threshold": 0.5,
                                                                                   "box_margin": 10.0}))
    return path
