"""An inference copy of a trained STARK: BatchNorm folded into the convolution before it, channels-last.

Tracking runs the same network thousands of times with fixed weights. Folding each Conv -> BatchNorm
pair into one convolution (w' = w * s, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps)) removes
two elementwise passes over every feature map; channels-last (NHWC) is the layout oneDNN's CPU
convolutions and cuDNN's tensor-core kernels run fastest in. Outputs equal the original model's up to
float rounding. Training never uses this copy: the original keeps its BatchNorm modules and state_dict.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from stark.model.frozen_batchnorm import FrozenBatchNorm2d

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def fold_conv_bn(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """One convolution computing norm(conv(x)) in eval mode."""
    if isinstance(norm, nn.BatchNorm2d) and norm.training:
        raise ValueError("cannot fold a BatchNorm2d in training mode: its statistics still change")
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                       conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode)
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_((bias - norm.running_mean) * scale + norm.bias)
    return folded.to(conv.weight.device, conv.weight.dtype)


def fold_batchnorms(module: nn.Module) -> int:
    """Fold, in place, every BatchNorm that directly follows a convolution: consecutive entries of an
    nn.Sequential, and ResNet's `convN` -> `bnN` attribute pairs. Folded norms become nn.Identity.
    Returns how many were folded."""
    folded = 0
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            if isinstance(module[i], nn.Conv2d) and isinstance(module[i + 1], _NORMS):
                module[i], module[i + 1] = fold_conv_bn(module[i], module[i + 1]), nn.Identity()
                folded += 1
    else:
        children = dict(module.named_children())
        for name, child in children.items():
            if name.startswith("bn") and isinstance(child, _NORMS):
                conv = children.get("conv" + name[2:])
                if isinstance(conv, nn.Conv2d):
                    setattr(module, "conv" + name[2:], fold_conv_bn(conv, child))
                    setattr(module, name, nn.Identity())
                    folded += 1
    for child in module.children():
        folded += fold_batchnorms(child)
    return folded


def inference_copy(model: nn.Module, channels_last: bool = True) -> nn.Module:
    """A folded (and by default channels-last) eval-mode copy; `model` itself is left untouched."""
    copied = copy.deepcopy(model).eval()
    fold_batchnorms(copied)
    for param in copied.parameters():
        param.requires_grad_(False)
    if channels_last:
        copied = copied.to(memory_format=torch.channels_last)
    return copied
