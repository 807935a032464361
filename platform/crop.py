"""Square crops around a box, exactly as training and tracking share them, and the maps between frames.

A crop of side ceil(sqrt(w*h) * factor) is centred on the box, padded with zeros where it leaves
the image (the padding is reported in a mask), and resized to out_size x out_size.
Image arrays are HWC uint8; boxes are xywh in pixels unless a name says otherwise.

Two crop rules (`tracker.crop_rule`; training always uses `platform`):
- platform: the window's pixels are exactly the image's; boxes map through its integer top-left.
- official: what the official STARK tracker does, so official release files score as published:
  the window also loses the image's last column (row) when it reaches the right (bottom) edge, and
  boxes map back through the unrounded top-left, box centre - side / 2.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class CropWindow:
    """Where a crop came from: its top-left on the frame's pixel grid (x0, y0), its side in frame
    pixels, out_size / side, and the frame point that boxes map through as the crop's top-left
    (origin_x, origin_y): (x0, y0) under the platform rule, unrounded under the official one."""

    x0: int
    y0: int
    side: int
    scale: float
    origin_x: float
    origin_y: float

    def box_to_crop(self, box_xywh: np.ndarray) -> np.ndarray:
        """Frame xywh -> crop-pixel xywh."""
        box = np.asarray(box_xywh, dtype=np.float64)
        return np.array([(box[0] - self.origin_x) * self.scale, (box[1] - self.origin_y) * self.scale,
                         box[2] * self.scale, box[3] * self.scale])

    def box_from_crop(self, box_xywh: np.ndarray) -> np.ndarray:
        """Crop-pixel xywh -> frame xywh."""
        box = np.asarray(box_xywh, dtype=np.float64)
        return np.array([box[0] / self.scale + self.origin_x, box[1] / self.scale + self.origin_y,
                         box[2] / self.scale, box[3] / self.scale])


def crop_window(box_xywh, factor: float, out_size: int) -> CropWindow:
    """The platform rule: boxes map through the integer top-left the pixels are cut at."""
    x, y, w, h = (float(v) for v in box_xywh)
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"cannot crop around box {box_xywh}: width and height must be finite and > 0")
    side = math.ceil(math.sqrt(w * h) * factor)
    side = max(side, 1)
    x0 = round(x + 0.5 * w - 0.5 * side)
    y0 = round(y + 0.5 * h - 0.5 * side)
    return CropWindow(x0, y0, side, out_size / side, float(x0), float(y0))


def official_crop_window(box_xywh, factor: float, out_size: int) -> CropWindow:
    """The official rule: pixels are cut at the same integer top-left, but boxes map through the
    unrounded one, box centre - half_side, as in researchmm/Stark lib/test/tracker/stark_st.py (and
    stark_s.py) `map_box_back`: cx_prev = x + 0.5 * w; half_side = 0.5 * search_size / resize_factor;
    cx_real = cx + (cx_prev - half_side), with resize_factor = output_sz / crop_sz from `sample_target`."""
    window = crop_window(box_xywh, factor, out_size)
    x, y, w, h = (float(v) for v in box_xywh)
    half_side = 0.5 * out_size / window.scale  # the official expression, in its order
    return CropWindow(window.x0, window.y0, window.side, window.scale, x + 0.5 * w - half_side,
                      y + 0.5 * h - half_side)


def crop_around_box(image: np.ndarray, box_xywh, factor: float, out_size: int
                    ) -> tuple[np.ndarray, np.ndarray, CropWindow]:
    """image HWC uint8 -> (crop [out, out, 3] uint8, padding mask [out, out] bool, window); platform rule.

    Equal to zero-padding the window to side x side and resizing it with bilinear interpolation
    (F.interpolate, align_corners=False), but computed from the four source taps of each output pixel:
    the padded canvas (up to thousands of pixels a side for a large box) is never built."""
    window = crop_window(box_xywh, factor, out_size)
    height, width = image.shape[:2]
    crop, mask = _cut(image, window, out_size, height, width)
    return crop, mask, window


def official_crop_around_box(image: np.ndarray, box_xywh, factor: float, out_size: int
                             ) -> tuple[np.ndarray, np.ndarray, CropWindow]:
    """As crop_around_box, under the official rule of researchmm/Stark lib/train/data/processing_utils.py
    `sample_target` (used there for template and search crops at test time): with x2 = x1 + crop_sz,
    `x2_pad = max(x2 - W + 1, 0)` and the image is sliced up to x2 - x2_pad, so a window that reaches
    the right edge (x2 >= W) takes the columns up to W - 2 and zero-pads the rest, the image's last
    column included; likewise rows with y2_pad. The padding mask covers that column (row) too, as
    the official att_mask does. The window maps boxes as `official_crop_window` says.
    Pixels are resampled as crop_around_box does (PyTorch's bilinear), not by cv2.resize."""
    window = official_crop_window(box_xywh, factor, out_size)
    height, width = image.shape[:2]
    # the part of the image the official slice can reach: all of it, less the last row / column
    # whenever the window reaches that edge
    usable_height = height - 1 if window.y0 + window.side >= height else height
    usable_width = width - 1 if window.x0 + window.side >= width else width
    crop, mask = _cut(image, window, out_size, usable_height, usable_width)
    return crop, mask, window


CropFunction = Callable[[np.ndarray, object, float, int], tuple[np.ndarray, np.ndarray, CropWindow]]
CROP_RULES: dict[str, CropFunction] = {"platform": crop_around_box, "official": official_crop_around_box}


def _cut(image: np.ndarray, window: CropWindow, out_size: int, height: int, width: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """The window of `image` resampled to out_size, with pixels at or beyond row `height` / column
    `width` (and before 0) treated as zero padding -> (crop [out, out, 3] uint8, mask [out, out] bool)."""
    y0, y1, wy0, wy1 = _bilinear_taps(window.y0, window.side, out_size, height)
    x0, x1, wx0, wx1 = _bilinear_taps(window.x0, window.side, out_size, width)
    rows0, rows1 = image[y0], image[y1]  # [out, W, C]
    wx0, wx1 = wx0[None, :, None], wx1[None, :, None]
    top = wx0 * rows0[:, x0] + wx1 * rows0[:, x1]  # same operation order as PyTorch's bilinear kernel
    bottom = wx0 * rows1[:, x0] + wx1 * rows1[:, x1]
    crop = np.rint(wy0[:, None, None] * top + wy1[:, None, None] * bottom).clip(0, 255).astype(np.uint8)
    # bilinear on the validity map; any touch of padding marks the output cell as padding
    mask = (wy0 + wy1)[:, None] * (wx0 + wx1)[0, :, 0][None, :] < 1.0 - 1e-6
    return crop, mask


def crop_padding_mask(window: CropWindow, out_size: int, height: int, width: int) -> np.ndarray:
    """[out, out] bool: True where an output pixel of `window`'s crop touches padding (outside the
    height x width image), exactly as `crop_around_box` marks it."""
    if window.x0 >= 0 and window.y0 >= 0 and window.x0 + window.side <= width and window.y0 + window.side <= height:
        return np.zeros((out_size, out_size), dtype=bool)  # every tap inside the image: weights sum to 1
    rows = _valid_weight(window.y0, window.side, out_size, height)
    cols = _valid_weight(window.x0, window.side, out_size, width)
    return np.multiply.outer(rows, cols) < 1.0 - 1e-6


def _valid_weight(start: int, side: int, out_size: int, limit: int) -> np.ndarray:
    """[out_size] float32: the weight `_bilinear_taps` gives the taps of each sample that fall inside
    [0, limit), as `_cut` sums it; computed from the window's cached taps (the stream asks this of every
    crop that touches the frame's edge: ~0.1 ms a crop less than `_bilinear_taps`)."""
    i0, i1, w0, w1 = _window_taps(side, out_size)
    first, end = -start, limit - start  # taps at window offsets [first, end) lie inside the image
    return w0 * ((i0 >= first) & (i0 < end)) + w1 * ((i1 >= first) & (i1 < end))


@functools.lru_cache(maxsize=1024)
def _window_taps(side: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each sample's two taps as offsets into the window, and their weights (read-only). Source positions
    follow F.interpolate(align_corners=False) in float32."""
    scale = np.float32(side / out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                     np.float32(0.0))
    i0 = src.astype(np.int64)
    i1 = np.minimum(i0 + 1, side - 1)
    w1 = (src - i0).astype(np.float32)
    w0 = np.float32(1.0) - w1
    for array in (i0, i1, w0, w1):
        array.flags.writeable = False
    return i0, i1, w0, w1


def window_pixels(image: np.ndarray, window: CropWindow, fill: float) -> np.ndarray:
    """The window's side x side pixels of `image` [H, W] or [H, W, C]: a view when the window lies inside
    the image, else a copy with `fill` beyond it (the zero-padded canvas STARK's `sample_target` builds)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = window.x0, window.y0, window.x0 + window.side, window.y0 + window.side
    top, bottom = min(max(y0, 0), height), min(max(y1, 0), height)
    left, right = min(max(x0, 0), width), min(max(x1, 0), width)
    if bottom - top == window.side and right - left == window.side:
        return image[top:bottom, left:right]
    canvas = np.full((window.side, window.side, *image.shape[2:]), fill, dtype=image.dtype)
    canvas[top - y0:bottom - y0, left - x0:right - x0] = image[top:bottom, left:right]
    return canvas


def _bilinear_taps(start: int, side: int, out_size: int, limit: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each of out_size samples over the window [start, start + side) of an axis of length `limit`:
    the two source pixels (clamped into the image) and their weights, zero where a tap is padding.
    Source positions follow F.interpolate(align_corners=False) in float32."""
    i0, i1, w0, w1 = _window_taps(side, out_size)
    p0, p1 = start + i0, start + i1
    w0 = w0 * ((p0 >= 0) & (p0 < limit))
    w1 = w1 * ((p1 >= 0) & (p1 < limit))
    return np.clip(p0, 0, limit - 1), np.clip(p1, 0, limit - 1), w0, w1


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
