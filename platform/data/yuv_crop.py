"""Crops cut straight from decoded YUV 4:2:0 planes: one affine warp per plane and crop (OpenCV), colour
converted only inside the crop. A decode worker never imports torch (its import alone is ~1.2 CPU-s of every
fresh worker process; OpenCV's ~0.1 s).

Converting a whole decoded frame to RGB costs more than decoding it (measured with libswscale through
PyAV at 640x480: 3.2 ms to RGB, 0.86 ms to decode), and a sample uses a few hundred pixels a side of
it. So the stream keeps the decoder's uint8 planes and warps each plane once per crop with
`cv2.warpAffine` (bilinear; the inverse map: output pixel i samples x0 + s (i + 0.5) - 0.5, s = window
side / crop size, the positions `crop.crop_around_box` samples), then converts only the crop (BT.601,
limited range: what ingest's encoder writes, `ingest.clips.rgb_to_yuv`) and de-interleaves it into the
batch's CHW slot.
- Luma is cut as `crop_around_box` cuts RGB: the side x side window, black (Y = 16) beyond the frame,
  resampled with positions clamped into the window (its edge pixels repeat when magnified).
- Chroma is centre-sited: sampled on its half-size plane at luma position p -> (p + 0.5) / 2 - 0.5,
  neutral (U = V = 128) beyond the frame, so edges blend into exactly (0, 0, 0) as in RGB.
Against `crop_around_box` on the same frame converted to RGB the crops differ only by rounding (OpenCV's
1/32-pixel bilinear weights, a uint8 YUV crop before conversion) and chroma interpolation
(tests/data/test_decode.py); masks and box maps are identical.

Cost on the crops of two real 640x480 units (frame set-up included, one thread): a 320 px search crop
0.30 ms and a 128 px template 0.095 ms, against 1.94 / 0.44 ms for the separable NumPy resampling this
replaced: 2.3 ms less per ST50 sample.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..crop import CropWindow, crop_padding_mask, window_pixels

# BT.601 limited range, Y'CbCr -> R'G'B' (rows R, G, B; columns Y - 16, U - 128, V - 128)
YUV_TO_RGB = np.array([[1.164, 0.0, 1.596],
                       [1.164, -0.392, -0.813],
                       [1.164, 2.017, 0.0]], dtype=np.float32)
BLACK_LUMA, BLACK_CHROMA = 16.0, 128.0
# the same as one affine map of (Y, U, V, 1), the form cv2.transform takes
YUV_TO_RGB_AFFINE = np.hstack([YUV_TO_RGB, -YUV_TO_RGB @ np.array([[BLACK_LUMA], [BLACK_CHROMA], [BLACK_CHROMA]],
                                                                   dtype=np.float32)]).astype(np.float64)


@dataclass
class YuvFrame:
    luma: np.ndarray  # [H', W'] uint8, the coded (even-sided) picture
    chroma: np.ndarray  # [2, H'/2, W'/2] uint8: U, V
    height: int  # the frame's size (the clip's planes may be padded to even sides)
    width: int

    @classmethod
    def from_planes(cls, planes: np.ndarray, height: int, width: int) -> "YuvFrame":
        """planes: a yuv420p frame as PyAV's `to_ndarray(format="yuv420p")` returns it, [H' * 3 / 2, W']
        uint8 for the even-sided H' x W' picture; height x width of it is the frame. Views, no copies."""
        coded_height, coded_width = planes.shape[0] * 2 // 3, planes.shape[1]
        chroma = planes[coded_height:].reshape(2, coded_height // 2, coded_width // 2)  # U then V, contiguous
        return cls(planes[:coded_height], chroma, height, width)


def cut_crop(frame: YuvFrame, window: CropWindow, out_size: int, flip: bool,
             out_pixels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(crop [3, S, S] uint8 RGB, padding mask [S, S] bool) of `window`, mirrored left-right when `flip`.
    `out_pixels`, if given, is the [3, S, S] uint8 array written into (a slot of a batch)."""
    scale = window.side / out_size
    size = (out_size, out_size)
    # luma as crop_around_box cuts it: the side x side window (black beyond the frame), resampled with
    # positions clamped into the window (align_corners=False): output pixel i samples s (i + 0.5) - 0.5
    in_window = np.array([[scale, 0.0, 0.5 * scale - 0.5], [0.0, scale, 0.5 * scale - 0.5]])
    in_frame = frame.luma[:frame.height, :frame.width]
    luma = cv2.warpAffine(window_pixels(in_frame, window, BLACK_LUMA), in_window, size,
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    # chroma on its half-size plane at luma position p -> (p + 0.5) / 2 - 0.5, neutral beyond the frame
    x_luma, y_luma = window.x0 + 0.5 * scale - 0.5, window.y0 + 0.5 * scale - 0.5
    to_chroma = np.array([[scale / 2, 0.0, (x_luma + 0.5) / 2 - 0.5], [0.0, scale / 2, (y_luma + 0.5) / 2 - 0.5]])
    chroma_height, chroma_width = (frame.height + 1) // 2, (frame.width + 1) // 2
    chroma = [cv2.warpAffine(plane[:chroma_height, :chroma_width], to_chroma, size, borderValue=BLACK_CHROMA,
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
              for plane in frame.chroma]
    yuv = cv2.merge([luma, *chroma])
    rgb = cv2.transform(yuv, YUV_TO_RGB_AFFINE)  # [S, S, 3] uint8, rounded and saturated
    if flip:
        rgb = cv2.flip(rgb, 1)
    pixels = np.empty((3, out_size, out_size), dtype=np.uint8) if out_pixels is None else out_pixels
    planes = cv2.split(rgb, mv=list(pixels))  # de-interleaved straight into the CHW slots
    for slot, plane in zip(pixels, planes):
        if not np.shares_memory(slot, plane):  # an OpenCV build that returned new planes
            slot[...] = plane
    mask = crop_padding_mask(window, out_size, frame.height, frame.width)
    return pixels, np.ascontiguousarray(mask[:, ::-1]) if flip else mask

