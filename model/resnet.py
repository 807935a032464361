"""ResNet-18/34/50/101 up to layer3 (stride 16, or 8 with layer3 dilated), in torchvision's parameter layout.

Written here because torchvision is not a dependency; the module names match torchvision's so
an ImageNet state_dict from torchvision loads directly (its layer4 and fc are simply not used).

Two choices for a network that starts from random weights instead of ImageNet:
- norm "batch": trainable BatchNorm (statistics and affine learn with the network). The default,
  "frozen", keeps ImageNet statistics fixed as STARK does; from random weights a frozen BatchNorm is
  the identity and the trunk trains without any normalisation.
- dilate_layer3: layer3 keeps stride 8 and dilates its 3x3 convolutions instead (DETR's "DC5"
  option): twice the feature resolution for small crops, the same weights and receptive field.
"""
from __future__ import annotations

import torch
from torch import nn

from stark.model.frozen_batchnorm import FrozenBatchNorm2d

NORMS: dict[str, type[nn.Module]] = {"frozen": FrozenBatchNorm2d, "batch": nn.BatchNorm2d}


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm: type[nn.Module] = FrozenBatchNorm2d, dilation: int = 1, first_dilation: int = 1):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride, first_dilation)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, dilation=dilation)
        self.bn2 = norm(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv, as in torchvision."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None,
                 norm: type[nn.Module] = FrozenBatchNorm2d, dilation: int = 1, first_dilation: int = 1):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, stride, first_dilation)
        self.bn2 = norm(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = norm(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# name -> (block, blocks per stage for layer1..layer3)
ARCHITECTURES: dict[str, tuple[type[nn.Module], tuple[int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6)),
    "resnet50": (Bottleneck, (3, 4, 6)),
    "resnet101": (Bottleneck, (3, 4, 23)),
}


class ResNetTrunk(nn.Module):
    """conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> layer3; input [B, 3, H, W] -> [B, C, H/s, W/s]
    with s = self.stride (16, or 8 when layer3 is dilated)."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int],
                 norm: type[nn.Module] = FrozenBatchNorm2d, dilate_layer3: bool = False):
        super().__init__()
        self._norm = norm
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = 64
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        # DC5 (torchvision's replace_stride_with_dilation): the first block keeps dilation 1, as there
        self.layer3 = self._make_stage(block, 256, layers[2], stride=1 if dilate_layer3 else 2,
                                       dilation=2 if dilate_layer3 else 1)
        self.num_channels = self._in_ch
        self.stride = 8 if dilate_layer3 else 16
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if norm is nn.BatchNorm2d:
            # each residual branch starts as a near-identity (its last BatchNorm at zero), the usual
            # recipe for a ResNet trained from random weights (Goyal et al. 2017)
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def _make_stage(self, block, width: int, blocks: int, stride: int, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != width * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, width * block.expansion, stride),
                self._norm(width * block.expansion),
            )
        stage = [block(self._in_ch, width, stride, downsample, norm=self._norm, dilation=dilation)]
        self._in_ch = width * block.expansion
        stage += [block(self._in_ch, width, norm=self._norm, dilation=dilation, first_dilation=dilation)
                  for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def stage_of(param_name: str) -> str:
    """The stage a trunk parameter or module belongs to: "conv1" for the stem (conv1 and its bn1)."""
    head = param_name.split(".")[0]
    return "conv1" if head in ("conv1", "bn1") else head


def resnet_trunk(name: str, norm: str = "frozen", dilate_layer3: bool = False) -> ResNetTrunk:
    block, layers = ARCHITECTURES[name]
    return ResNetTrunk(block, layers, NORMS[norm], dilate_layer3)


def load_torchvision_weights(trunk: ResNetTrunk, path: str) -> None:
    """Load an ImageNet state_dict saved by torchvision (`torch.save(resnet.state_dict(), path)`).

    Keys of the parts we cut off (layer4, fc) are ignored; every key the trunk needs must be present.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (dict of tensors), got {type(state).__name__}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    kept = {k: v for k, v in state.items() if not k.startswith(("layer4.", "fc."))}
    expected = {k for k in trunk.state_dict() if not k.endswith("num_batches_tracked")}  # a counter, not weights
    missing = sorted(expected - {k for k in kept if not k.endswith("num_batches_tracked")})
    unexpected = sorted(k for k in kept if k not in expected and not k.endswith("num_batches_tracked"))
    if missing or unexpected:
        raise ValueError(
            f"{path}: not a torchvision ResNet state_dict matching this backbone; "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''} ({len(unexpected)})"
        )
    for key, value in kept.items():
        if key in expected and tuple(value.shape) != tuple(trunk.state_dict()[key].shape):
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, backbone expects "
                             f"{tuple(trunk.state_dict()[key].shape)} (wrong ResNet depth?)")
    trunk.load_state_dict(kept, strict=False)
