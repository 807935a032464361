"""Square crops around a box, exactly as training and tracking share them, and the maps between frames.

A crop of side ceil(sqrt(w*h) * factor) is centred on the box, padded with zeros where it leaves
the image (the padding is reported in a mask), and resized to out_size x out_size.
Image arrays are HWC uint8; boxes are xywh in pixels unless a name says otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class CropWindow:
    """Where a crop came from: its top-left in the frame, its side in frame pixels, and out_size / side."""

    x0: int
    y0: int
    side: int
    scale: float

    def box_to_crop(self, box_xywh: np.ndarray) -> np.ndarray:
        """Frame xywh -> crop-pixel xywh."""
        box = np.asarray(box_xywh, dtype=np.float64)
        return np.array([(box[0] - self.x0) * self.scale, (box[1] - self.y0) * self.scale,
                         box[2] * self.scale, box[3] * self.scale])

    def box_from_crop(self, box_xywh: np.ndarray) -> np.ndarray:
        """Crop-pixel xywh -> frame xywh."""
        box = np.asarray(box_xywh, dtype=np.float64)
        return np.array([box[0] / self.scale + self.x0, box[1] / self.scale + self.y0,
                         box[2] / self.scale, box[3] / self.scale])


def crop_window(box_xywh, factor: float, out_size: int) -> CropWindow:
    x, y, w, h = (float(v) for v in box_xywh)
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"cannot crop around box {box_xywh}: width and height must be finite and > 0")
    side = math.ceil(math.sqrt(w * h) * factor)
    side = max(side, 1)
    x0 = round(x + 0.5 * w - 0.5 * side)
    y0 = round(y + 0.5 * h - 0.5 * side)
    return CropWindow(x0, y0, side, out_size / side)


def crop_around_box(image: np.ndarray, box_xywh, factor: float, out_size: int
                    ) -> tuple[np.ndarray, np.ndarray, CropWindow]:
    """image HWC uint8 -> (crop [out, out, 3] uint8, padding mask [out, out] bool, window)."""
    window = crop_window(box_xywh, factor, out_size)
    height, width = image.shape[:2]
    x0, y0, side = window.x0, window.y0, window.side
    # the part of the window inside the image
    ix0, iy0 = max(x0, 0), max(y0, 0)
    ix1, iy1 = min(x0 + side, width), min(y0 + side, height)
    padded = np.zeros((side, side, image.shape[2]), dtype=image.dtype)
    valid = np.zeros((side, side), dtype=np.float32)
    if ix1 > ix0 and iy1 > iy0:
        padded[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = image[iy0:iy1, ix0:ix1]
        valid[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = 1.0
    crop = resize_image(padded, out_size)
    # bilinear on the validity map; any touch of padding marks the output cell as padding
    mask = F.interpolate(torch.from_numpy(valid)[None, None], size=(out_size, out_size),
                         mode="bilinear", align_corners=False)[0, 0].numpy() < 1.0 - 1e-6
    return crop, mask, window


def resize_image(image: np.ndarray, out_size: int) -> np.ndarray:
    """HWC uint8 square -> [out_size, out_size, C] uint8, bilinear (half-pixel centres)."""
    if image.shape[0] == out_size and image.shape[1] == out_size:
        return image.copy()
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=(out_size, out_size), mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def clip_box_xywh(box_xywh, height: int, width: int, margin: float = 10.0) -> np.ndarray:
    """Keep a predicted box inside the frame with at least `margin` pixels of it visible (official rule)."""
    x1, y1, w, h = (float(v) for v in box_xywh)
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0.0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0.0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)])


def jitter_box_xywh(box_xywh, scale_sigma: float, center_factor: float, rng: np.random.Generator) -> np.ndarray:
    """Official search jitter: size times exp(N(0, sigma)) per axis; centre moved uniformly within
    +-0.5 * center_factor * sqrt(jittered area) per axis."""
    x, y, w, h = (float(v) for v in box_xywh)
    size = np.array([w, h]) * np.exp(rng.standard_normal(2) * scale_sigma)
    max_offset = math.sqrt(size[0] * size[1]) * center_factor
    center = np.array([x + 0.5 * w, y + 0.5 * h]) + max_offset * (rng.random(2) - 0.5)
    return np.array([center[0] - 0.5 * size[0], center[1] - 0.5 * size[1], size[0], size[1]])
