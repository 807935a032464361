"""Crops cut straight from decoded YUV 4:2:0 planes: one bilinear warp per crop, colour converted only
inside the crop.

Converting a whole decoded frame to RGB costs more than decoding it (measured with libswscale through
PyAV at 640x480: 3.2 ms to RGB, 0.86 ms to decode), and a sample uses a few hundred pixels a side of
it. So the stream keeps the decoder's planes, samples each crop's pixels from them with
`F.grid_sample` at exactly the positions `crop.crop_around_box` samples (the same window, the same
half-pixel centres; zeros outside the frame), and converts only the crop (BT.601, limited range: what
ingest's encoder writes, `ingest.clips.rgb_to_yuv`, with centre-sited chroma). Chroma is interpolated
bilinearly on its half-size plane.

Zero padding is black in RGB: the planes are stored with black subtracted (Y - 16, U - 128, V - 128),
so the warp's zeros outside the frame convert to exactly (0, 0, 0), edges blending as in RGB.
Against `crop_around_box` on the same frame converted to RGB the crops differ only by rounding and
chroma interpolation (tests/data/test_decode.py); masks and box maps are identical.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..crop import CropWindow, crop_padding_mask, crop_sample_positions

# BT.601 limited range, Y'CbCr -> R'G'B' (rows R, G, B; columns Y - 16, U - 128, V - 128)
YUV_TO_RGB = torch.tensor([[1.164, 0.0, 1.596],
                           [1.164, -0.392, -0.813],
                           [1.164, 2.017, 0.0]])


@dataclass
class YuvFrame:
    luma: torch.Tensor  # [1, 1, H, W] float32, Y - 16
    chroma: torch.Tensor  # [1, 2, ceil(H/2), ceil(W/2)] float32, (U - 128, V - 128)
    height: int  # the frame's size (the clip's planes may be padded to even sides)
    width: int

    @classmethod
    def from_planes(cls, planes: np.ndarray, height: int, width: int) -> "YuvFrame":
        """planes: a yuv420p frame as PyAV's `to_ndarray(format="yuv420p")` returns it, [H' * 3 / 2, W']
        uint8 for the even-sided H' x W' picture; height x width of it is the frame."""
        coded_height, coded_width = planes.shape[0] * 2 // 3, planes.shape[1]
        quarter = coded_height * coded_width // 4
        u = planes[coded_height:].reshape(-1)[:quarter].reshape(coded_height // 2, coded_width // 2)
        v = planes[coded_height:].reshape(-1)[quarter:].reshape(coded_height // 2, coded_width // 2)
        luma = torch.from_numpy(np.ascontiguousarray(planes[:height, :width])).float().sub_(16.0)
        chroma = torch.from_numpy(np.stack([u, v])[:, :(height + 1) // 2, :(width + 1) // 2]).float().sub_(128.0)
        return cls(luma[None, None], chroma[None], height, width)


def cut_crop(frame: YuvFrame, window: CropWindow, out_size: int, flip: bool,
             out_pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crop [3, S, S] uint8 RGB, padding mask [S, S] bool) of `window`, mirrored left-right when `flip`.
    `out_pixels`, if given, is the [3, S, S] uint8 array written into (a slot of a batch)."""
    positions = crop_sample_positions(window, out_size)
    xs = torch.from_numpy(window.x0 + positions.astype(np.float64))
    ys = torch.from_numpy(window.y0 + positions.astype(np.float64))
    if flip:
        xs = xs.flip(0)
    # pixel coordinate p -> grid_sample's normalised (2p + 1) / size - 1 (align_corners=False); the
    # half-size chroma plane has the same normalised coordinates when the picture's sides are even
    gx = ((2 * xs + 1) / frame.width - 1).float()
    gy = ((2 * ys + 1) / frame.height - 1).float()
    grid = torch.stack([gx[None, :].expand(out_size, -1), gy[:, None].expand(-1, out_size)], dim=-1)[None]
    luma = F.grid_sample(frame.luma, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    chroma_grid = grid if frame.width % 2 == 0 and frame.height % 2 == 0 else _chroma_grid(xs, ys, frame, out_size)
    chroma = F.grid_sample(frame.chroma, chroma_grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    yuv = torch.cat([luma[0], chroma[0]], 0).reshape(3, -1)  # [3, S*S]
    rgb = (YUV_TO_RGB @ yuv).round_().clamp_(0, 255).reshape(3, out_size, out_size)
    pixels = np.empty((3, out_size, out_size), dtype=np.uint8) if out_pixels is None else out_pixels
    torch.from_numpy(pixels).copy_(rgb)
    mask = crop_padding_mask(window, out_size, frame.height, frame.width)
    return pixels, np.ascontiguousarray(mask[:, ::-1]) if flip else mask


def _chroma_grid(xs: torch.Tensor, ys: torch.Tensor, frame: YuvFrame, out_size: int) -> torch.Tensor:
    """Normalised chroma coordinates when a side is odd (the chroma plane covers the even-padded side)."""
    ch, cw = frame.chroma.shape[-2:]
    gx = ((xs + 0.5) / cw - 1).float()  # luma p -> chroma (p + 0.5) / 2 - 0.5 -> (2c + 1) / cw - 1
    gy = ((ys + 0.5) / ch - 1).float()
    return torch.stack([gx[None, :].expand(out_size, -1), gy[:, None].expand(-1, out_size)], dim=-1)[None]
