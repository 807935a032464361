"""ImageNet normalisation of uint8 crops into network input; shared by the training stream and the tracker."""
from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_crops(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[..., H, W, 3] uint8 (HWC) -> [..., 3, H, W] float32, (x / 255 - mean) / std."""
    tensor = torch.as_tensor(crops)
    tensor = tensor.movedim(-1, -3).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)
