"""ResNet-18/34/50/101 up to layer3 (stride 16), in torchvision's parameter layout.

Written here because torchvision is not a dependency; the module names match torchvision's so
an ImageNet state_dict from torchvision loads directly (its layer4 and fc are simply not used).
"""
from __future__ import annotations

import torch
from torch import nn

from stark.model.frozen_batchnorm import FrozenBatchNorm2d


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = FrozenBatchNorm2d(width)
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

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = FrozenBatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = FrozenBatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = FrozenBatchNorm2d(width * self.expansion)
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
    """conv1 -> bn1 -> relu -> maxpool -> layer1 -> layer2 -> layer3; input [B, 3, H, W] -> [B, C, H/16, W/16]."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._in_ch = 64
        self.layer1 = self._make_stage(block, 64, layers[0], stride=1)
        self.layer2 = self._make_stage(block, 128, layers[1], stride=2)
        self.layer3 = self._make_stage(block, 256, layers[2], stride=2)
        self.num_channels = self._in_ch
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_stage(self, block, width: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_ch != width * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._in_ch, width * block.expansion, stride),
                FrozenBatchNorm2d(width * block.expansion),
            )
        stage = [block(self._in_ch, width, stride, downsample)]
        self._in_ch = width * block.expansion
        stage += [block(self._in_ch, width) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


def resnet_trunk(name: str) -> ResNetTrunk:
    block, layers = ARCHITECTURES[name]
    return ResNetTrunk(block, layers)


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
    expected = set(trunk.state_dict())
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
