"""ImageNet normalisation of uint8 crops into network input, in NumPy: the tracker hands it to either engine
(PyTorch or ONNX Runtime, which must run without PyTorch). Equal, bit for bit, to the same arithmetic in torch
(float32 true division)."""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN = np.array(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.array(IMAGENET_STD, dtype=np.float32).reshape(3, 1, 1)


def normalize_crops(crops: np.ndarray) -> np.ndarray:
    """[..., H, W, 3] uint8 (HWC) -> [..., 3, H, W] float32, (x / 255 - mean) / std (a channels-last view)."""
    planes = np.moveaxis(np.asarray(crops), -1, -3).astype(np.float32)  # [..., 3, H, W]
    return (planes / np.float32(255.0) - _MEAN) / _STD
