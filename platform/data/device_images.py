"""The photometric half of STARK processing, on the training device over a whole batch: uint8 crops from
the stream -> the network's float input.

Per sample, in the official order (lib/train/data/transforms.py: ToGrayscale in transform_joint, then
ToTensorAndJitter, then Normalize): grayscale (joint, ITU-R 601 weights, rounded to whole levels as
cv2's RGB2GRAY), brightness x U(1 - b, 1 + b) per crop clamped to [0, 1], ImageNet normalisation. The
draws come with the batch (`brightness` [B, T + 1], `grayscale` [B]), so a sample is the same wherever
it is made. A batch whose crops are already float (made by hand, e.g. in tests) is taken as the
network's input as it is.
"""
from __future__ import annotations

import torch

from .. import image_norm

GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def network_images(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """template [B, T, 3, Hz, Wz] and search [B, 3, Hx, Wx] uint8 -> float32 normalised, photometric
    augmentation applied; the other keys as they were. Runs on whatever device the batch is on."""
    if not batch["search"].dtype == torch.uint8:
        return batch
    brightness, gray = batch["brightness"].float(), batch["grayscale"].bool()
    out = dict(batch)
    out["template"] = _jitter_and_normalise(batch["template"], brightness[:, :-1], gray[:, None])
    out["search"] = _jitter_and_normalise(batch["search"][:, None], brightness[:, -1:], gray[:, None])[:, 0]
    return out


def _jitter_and_normalise(crops: torch.Tensor, brightness: torch.Tensor, gray: torch.Tensor) -> torch.Tensor:
    """crops [B, K, 3, H, W] uint8, brightness [B, K], gray [B, 1] bool -> [B, K, 3, H, W] float32."""
    x = crops.float()
    weights = torch.tensor(GRAY_WEIGHTS, device=x.device).view(1, 1, 3, 1, 1)
    luma = (x * weights).sum(2, keepdim=True).round_().clamp_(0, 255)  # [B, K, 1, H, W]
    x = torch.where(gray.view(-1, 1, 1, 1, 1), luma.expand_as(x), x)
    x = (x * (brightness / 255.0).view(*brightness.shape, 1, 1, 1)).clamp_(max=1.0)
    mean = torch.tensor(image_norm.IMAGENET_MEAN, device=x.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(image_norm.IMAGENET_STD, device=x.device).view(1, 1, 3, 1, 1)
    return x.sub_(mean).div_(std)
