"""The tracker's inference copy: BatchNorm folded into convolutions, channels-last, same outputs."""
import pytest
import torch
from torch import nn

from stark.model.config import ModelConfig
from stark.model.frozen_batchnorm import FrozenBatchNorm2d
from stark.model.inference import fold_batchnorms, fold_conv_bn, inference_copy
from stark.model.stark import build_stark
from stark.platform.experiment import load_config


def _with_nontrivial_norms(model: nn.Module) -> nn.Module:
    """Fresh models have identity BatchNorms, which would make folding trivially right."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            n = module.running_var.numel()
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            with torch.no_grad():
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


def _crops(cfg: ModelConfig, batch: int):
    torch.manual_seed(0)
    z, x = cfg.template_size, cfg.search_size
    search_mask = torch.zeros(batch, x, x, dtype=torch.bool)
    search_mask[:, :, : x // 5] = True  # some padding, so the mask path is exercised too
    return (torch.randn(batch, 3, z, z), torch.zeros(batch, z, z, dtype=torch.bool),
            torch.randn(batch, 3, x, x), search_mask)


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_inference_copy_gives_the_models_boxes_and_scores(channels_last):
    cfg = load_config("stark_tiny").model
    model = _with_nontrivial_norms(build_stark(cfg))
    fast = inference_copy(model, channels_last=channels_last)
    z, z_mask, x, x_mask = _crops(cfg, batch=3)
    with torch.inference_mode():
        expected = model.forward_search([model.forward_backbone(z, z_mask)] * 2, x, x_mask)
        got = fast.forward_search([fast.forward_backbone(z, z_mask)] * 2, x, x_mask)
    for key in ("pred_boxes", "pred_logits"):
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-5)


def test_every_batchnorm_after_a_convolution_is_folded_and_the_original_is_untouched():
    cfg = load_config("stark_tiny").model
    model = build_stark(cfg)
    state_before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_copy(model)
    norms = [m for m in fast.modules() if isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d))]
    assert norms == []  # ResNet-18 trunk: 15, corner head: 2 branches x 4
    assert sum(isinstance(m, (FrozenBatchNorm2d, nn.BatchNorm2d)) for m in model.modules()) == 23
    assert all(torch.equal(v, state_before[k]) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in fast.parameters())


def test_a_bottleneck_resnet_folds_too():
    cfg = load_config("stark_st50").model
    model = build_stark(cfg).eval()
    assert fold_batchnorms(model) == 1 + (3 + 4 + 6) * 3 + 3 + 8  # stem, blocks, downsamples, corner head


def test_a_training_batchnorm_is_not_folded():
    conv, norm = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4).train()
    with pytest.raises(ValueError, match="training mode"):
        fold_conv_bn(conv, norm)
