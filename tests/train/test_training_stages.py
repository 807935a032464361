"""What each stage trains: frozen parts get no gradient; stage 2 moves the score head and nothing else."""
from __future__ import annotations

import torch

from tests.support.model_fixtures import crops, preset_model_config
from stark.model.losses import BoxLoss, ScoreLoss
from stark.model.stark import build_stark


def tiny_model(seed: int = 0, trainable_stages: tuple[str, ...] = ("layer2", "layer3")):
    """stark_tiny's network with the official trainable stages (ImageNet stem and layer1 kept) and the
    official frozen BatchNorm."""
    torch.manual_seed(seed)
    cfg = preset_model_config("stark_tiny", **{"backbone.trainable_stages": list(trainable_stages),
                                               "backbone.norm": "frozen"})
    return cfg, build_stark(cfg)


def test_stage_one_trains_everything_but_the_score_head_and_the_frozen_stem():
    _, model = tiny_model()
    trained = {n for n, _ in model.stage_parameters(1)}
    assert not any(n.startswith("score_head.") for n in trained)
    assert not any(n.startswith(("backbone.body.conv1", "backbone.body.layer1.")) for n in trained)
    assert any(n.startswith("backbone.body.layer2.") for n in trained)
    assert any(n.startswith("backbone.body.layer3.") for n in trained)
    assert {"bottleneck.weight", "target_query.weight"} <= trained
    assert any(n.startswith("box_head.") for n in trained) and any(n.startswith("transformer.") for n in trained)


def test_a_backbone_from_random_weights_may_train_its_stem_and_layer1_too():
    _, model = tiny_model(trainable_stages=("conv1", "layer1", "layer2", "layer3"))
    trained = {n for n, _ in model.stage_parameters(1)}
    assert {"backbone.body.conv1.weight", "backbone.body.layer1.0.conv1.weight"} <= trained
    assert not any(n.startswith("score_head.") for n in trained)


def test_frozen_parts_really_get_no_gradient():
    cfg, model = tiny_model()
    model.train_stage(1)
    templates, template_masks, search, search_mask = crops(cfg)
    out = model(templates, template_masks, search, search_mask)
    BoxLoss()(out["pred_boxes"], torch.tensor([[0.5, 0.5, 0.2, 0.3]] * 2))["loss"].backward()
    for name, param in model.named_parameters():
        frozen = name.startswith(("backbone.body.conv1", "backbone.body.layer1.", "score_head."))
        if frozen:
            assert param.grad is None, name
    assert model.backbone.body.layer3[0].conv1.weight.grad.abs().sum() > 0
    # every backbone BatchNorm is frozen: its values are buffers, never parameters
    assert not any(".bn" in n or "downsample.1" in n for n, _ in model.backbone.named_parameters())


def test_stage_two_changes_only_the_score_head():
    cfg, model = tiny_model()
    model.train_stage(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for _, p in model.stage_parameters(2)], lr=1e-2)
    for step in range(3):
        templates, template_masks, search, search_mask = crops(cfg, seed=step)
        out = model(templates, template_masks, search, search_mask)
        ScoreLoss()(out["pred_logits"], torch.tensor([1.0, 0.0]))["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("score_head.") for k in changed), changed
    # parameters *and* buffers (corner-head BatchNorm statistics) outside the score head are bit-identical
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("score_head."))


def test_stage_two_needs_the_score_head():
    cfg = preset_model_config("stark_tiny", variant="S")
    model = build_stark(cfg)
    try:
        model.stage_parameters(2)
    except ValueError as err:
        assert "STARK-ST" in str(err)
    else:
        raise AssertionError("STARK-S has no stage 2")
