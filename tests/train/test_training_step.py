"""The training step in plain PyTorch (no Ray): optimiser groups, LR drop, one step per stage, AMP,
the sampler position and the training checkpoint round trip."""
from __future__ import annotations

import io

import pytest
import torch

from tests.support.model_fixtures import crops
from stark.model.losses import build_loss
from stark.model.stark import build_stark
from stark.platform.experiment import load_config, to_dict
from stark.platform.model_loading import from_content
from stark.platform.train.step import (SamplerState, TrainingState, advance_schedule, build_optimizer,
                                     build_scheduler, final_checkpoint, make_grad_scaler, remaining_steps,
                                     restore_training, train_step, training_checkpoint)

CPU = torch.device("cpu")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One thread, as a 1-CPU Ray Train worker has: on a busy 2-core machine two spinning OpenMP
    threads make these steps 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(overrides: list[str] | None = None, seed: int = 0):
    """stark_tiny with the official optimiser settings (lr 1e-4, backbone at 0.1x)."""
    cfg = load_config("stark_tiny", ["train.lr=1.0e-4", "train.backbone_lr_multiplier=0.1", *(overrides or [])])
    torch.manual_seed(seed)
    return cfg, build_stark(cfg.model)


def batch_of(cfg, size: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stream-format batch (template [B, T, 3, Hz, Wz], ...) with fixed targets and labels."""
    templates, template_masks, search, search_mask = crops(cfg.model, batch=size, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    centers = 0.3 + 0.4 * torch.rand(size, 2, generator=gen)
    sizes = 0.15 + 0.2 * torch.rand(size, 2, generator=gen)
    return {"template": torch.stack(templates, 1), "template_mask": torch.stack(template_masks, 1),
            "search": search, "search_mask": search_mask, "search_box": torch.cat([centers, sizes], 1),
            "label": (torch.arange(size) % 2).float()}


def test_optimizer_trains_the_backbone_at_lr_times_the_multiplier():
    cfg, model = tiny()
    optimizer = build_optimizer(model, 1, cfg.train)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["main"]["lr"] == pytest.approx(1e-4) and groups["backbone"]["lr"] == pytest.approx(1e-5)
    assert all(g["weight_decay"] == pytest.approx(1e-4) for g in optimizer.param_groups)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].startswith("backbone.body.") for p in groups["backbone"]["params"])
    assert not any(names[id(p)].startswith(("backbone.", "score_head.")) for p in groups["main"]["params"])
    # stage 2: the score head only, one group
    stage2 = build_optimizer(model, 2, cfg.train)
    assert [g["name"] for g in stage2.param_groups] == ["main"]
    assert all(names[id(p)].startswith("score_head.") for p in stage2.param_groups[0]["params"])


def test_learning_rate_drops_by_the_factor_at_the_drop_epoch():
    cfg, model = tiny(["train.stage1.lr_drop_epoch=3"])
    optimizer = build_optimizer(model, 1, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train.stage1, cfg.train)
    lrs = []
    for epoch in range(5):
        advance_schedule(scheduler, epoch)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5, 1e-5])
    assert optimizer.param_groups[1]["lr"] == pytest.approx(1e-6)  # the backbone group drops too


def test_stage_one_steps_lower_the_box_loss_on_a_fixed_batch():
    cfg, model = tiny(["train.lr=1.0e-3"])
    model.train_stage(1)
    optimizer = build_optimizer(model, 1, cfg.train)
    scaler, loss_fn, batch = make_grad_scaler("none", CPU), build_loss(1), batch_of(cfg, size=2)
    losses = [float(train_step(model, loss_fn, 1, batch, optimizer, scaler, grad_clip=0.1)["loss"]) for _ in range(8)]
    assert sum(losses[-2:]) / 2 < 0.9 * sum(losses[:2]) / 2, losses


def test_gradient_clipping_bounds_the_global_norm_of_the_update():
    cfg, model = tiny()
    model.train_stage(1)
    optimizer = build_optimizer(model, 1, cfg.train)
    terms = train_step(model, build_loss(1), 1, batch_of(cfg), optimizer, make_grad_scaler("none", CPU),
                       grad_clip=0.1)
    clipped = torch.norm(torch.stack([p.grad.norm() for g in optimizer.param_groups for p in g["params"]
                                      if p.grad is not None]))
    assert terms["grad_norm"] > 0.1 and clipped <= 0.1 + 1e-5  # reported: before clipping; applied: clipped


def test_a_stage_two_step_leaves_every_non_score_parameter_and_buffer_bit_identical():
    cfg, model = tiny()
    model.train_stage(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, 2, cfg.train)
    scaler = make_grad_scaler("none", CPU)
    for seed in range(3):
        train_step(model, build_loss(2), 2, batch_of(cfg, seed=seed), optimizer, scaler, grad_clip=0.1)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("score_head.") for k in changed), changed


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_run_and_only_fp16_scales_the_loss(amp):
    # half-size crops: a CPU has no fp16 kernels, so an fp16 step of the full tiny model takes ~35 s (this ~10 s)
    cfg, model = tiny(["model.template_size=32", "model.search_size=64"])
    model.train_stage(1)
    optimizer = build_optimizer(model, 1, cfg.train)
    scaler = make_grad_scaler(amp, CPU)
    terms = train_step(model, build_loss(1), 1, batch_of(cfg), optimizer, scaler, amp=amp, grad_clip=0.1)
    assert torch.isfinite(terms["loss"]) and terms["loss"].dtype == torch.float32
    assert scaler.is_enabled() == (amp == "fp16")


def test_sampler_state_names_the_epoch_and_offset_to_resume_from():
    state = SamplerState(samples_per_epoch=100, samples_seen=250)
    assert (state.epoch, state.samples_in_epoch) == (2, 50)
    assert SamplerState.from_dict(state.to_dict(), 100).samples_seen == 250
    # a resumed job with another samples_per_epoch still starts 50 samples into epoch 2
    assert SamplerState.from_dict(state.to_dict(), 80).samples_seen == 2 * 80 + 50
    # the stream splits evenly over workers, each dropping its last partial batch
    assert remaining_steps(250, 300, num_workers=2, batch_size=8) == 3
    assert remaining_steps(300, 300, num_workers=2, batch_size=8) == 0


def test_training_checkpoint_resumes_to_the_same_next_step():
    """Save after 2 steps, restore into fresh objects: step 3 gives bit-identical weights either way."""
    cfg, model = tiny(["train.lr=1.0e-3"])
    model.train_stage(1)
    optimizer = build_optimizer(model, 1, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train.stage1, cfg.train)
    scaler, loss_fn = make_grad_scaler("none", CPU), build_loss(1)
    state = TrainingState(1, 0, SamplerState(64))
    for seed in range(2):
        train_step(model, loss_fn, 1, batch_of(cfg, seed=seed), optimizer, scaler, grad_clip=0.1)
        state.step, state.sampler.samples_seen = state.step + 1, state.sampler.samples_seen + 2
    buffer = io.BytesIO()
    torch.save(training_checkpoint(model, to_dict(cfg), state, optimizer, scheduler, scaler), buffer)
    content = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # plain state only

    _, resumed = tiny(seed=123)  # other initial weights: everything must come from the checkpoint
    resumed.train_stage(1)
    optimizer2 = build_optimizer(resumed, 1, cfg.train)
    scheduler2 = build_scheduler(optimizer2, cfg.train.stage1, cfg.train)
    scaler2 = make_grad_scaler("none", CPU)
    state2 = restore_training(content, resumed, optimizer2, scheduler2, scaler2, samples_per_epoch=64)
    assert (state2.step, state2.sampler.samples_seen) == (2, 4)

    torch.manual_seed(7)  # dropout
    train_step(model, loss_fn, 1, batch_of(cfg, seed=2), optimizer, scaler, grad_clip=0.1)
    torch.manual_seed(7)
    train_step(resumed, loss_fn, 1, batch_of(cfg, seed=2), optimizer2, scaler2, grad_clip=0.1)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_final_checkpoint_is_a_platform_checkpoint_that_load_model_reads():
    cfg, model = tiny()
    content = final_checkpoint(model, to_dict(cfg), TrainingState(1, 5, SamplerState(64, 20)), {"loss": 1.0})
    buffer = io.BytesIO()
    torch.save(content, buffer)
    loaded = from_content(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True), "final.pt")
    assert loaded.kind == "platform" and loaded.checkpoint["step"] == 5 and "optimizer" not in loaded.checkpoint
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.model.state_dict().values()))


def test_box_iou_score_labels_keep_only_positives_whose_box_is_right():
    from stark.platform.train.step import score_labels

    batch = {"label": torch.tensor([1.0, 1.0, 0.0]),
             "search_box": torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 3)}  # cxcywh
    out = {"pred_boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2],  # right box
                                       [0.8, 0.8, 0.2, 0.2],  # wrong box
                                       [0.5, 0.5, 0.2, 0.2]])}  # right place, but a negative sample
    assert score_labels(out, batch, "presence").tolist() == [1.0, 1.0, 0.0]
    assert score_labels(out, batch, "box_iou").tolist() == [1.0, 0.0, 0.0]


def test_a_resumed_stage_follows_the_lr_drop_of_the_config_it_resumes_under():
    cfg, model = tiny(["train.stage1.lr_drop_epoch=8"])
    model.train_stage(1)
    optimizer = build_optimizer(model, 1, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train.stage1, cfg.train)
    scaler = make_grad_scaler("none", CPU)
    content = training_checkpoint(model, to_dict(cfg), TrainingState(1, 2, SamplerState(64, 128)), optimizer,
                                  scheduler, scaler)
    shorter, _ = tiny(["train.stage1.lr_drop_epoch=3"])
    optimizer2 = build_optimizer(model, 1, shorter.train)
    scheduler2 = build_scheduler(optimizer2, shorter.train.stage1, shorter.train)
    state = restore_training(content, model, optimizer2, scheduler2, scaler, samples_per_epoch=64)
    advance_schedule(scheduler2, 3)
    assert state.sampler.epoch == 2 and scheduler2.step_size == 3
    assert optimizer2.param_groups[0]["lr"] == pytest.approx(shorter.train.lr * shorter.train.lr_drop_factor)
