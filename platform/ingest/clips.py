"""H.264 clips: how ingest encodes a run of frames (PyAV, libx264) and how the data stream decodes frames
from one (decord).

Encoding choices, and why:
- constant quality (`crf`), no B-frames and a fixed keyframe interval (`keyframe_interval`): a frame is
  reached by decoding at most that many frames from the keyframe before it, so random access is cheap;
- `tune=fastdecode` (CAVLC, no deblocking): about half the decode time for a few percent more bytes at
  the same PSNR; training decodes every clip many times, ingest encodes it once;
- one x264 thread per clip (parallelism comes from Ray tasks), and RGB -> Y'CbCr 4:2:0 done here in
  integer arithmetic rather than by libswscale (whose SIMD paths are not bit-exact and may depend on the
  process), so the bytes are deterministic: a re-run of ingest reproduces the same clips and manifest;
- BT.601 limited range with centre-sited chroma (each chroma sample averages a 2x2 block), exactly what
  the data stream's YUV crops (`platform/data/yuv_crop.py`) invert;
- yuv420p (the default pixel format) needs even sides: odd frames are padded by one replicated pixel,
  and readers crop back to the manifest's width x height.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..storage import StorageConfig, is_s3, read_bytes


@dataclass(frozen=True)
class EncodeSettings:
    crf: int = 16
    keyframe_interval: int = 4
    preset: str = "medium"
    pixel_format: str = "yuv420p"
    fast_decode: bool = True


class ClipEncoder:
    """Frames in (HWC uint8, all one size), one MP4 clip's bytes out."""

    def __init__(self, width: int, height: int, fps: float, settings: EncodeSettings):
        import av

        self.width, self.height = width, height
        self.num_frames = 0
        self._buffer = io.BytesIO()
        self._container = av.open(self._buffer, "w", format="mp4")
        k = settings.keyframe_interval
        options = {"crf": str(settings.crf), "preset": settings.preset, "threads": "1",
                   "x264-params": f"keyint={k}:min-keyint={k}:scenecut=0:bframes=0"}
        if settings.fast_decode:
            options["tune"] = "fastdecode"
        self._stream = self._container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                                  options=options)
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = settings.pixel_format

    def add(self, frame: np.ndarray) -> None:
        import av

        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the clip is {self.width}x{self.height}")
        if self.width % 2 or self.height % 2:
            frame = np.pad(frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        planes = rgb_to_yuv(frame, self._stream.pix_fmt)
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(planes, format=self._stream.pix_fmt)):
            self._container.mux(packet)
        self.num_frames += 1

    def finish(self) -> bytes:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        return self._buffer.getvalue()


def rgb_to_yuv(frame: np.ndarray, pixel_format: str = "yuv420p") -> np.ndarray:
    """HWC uint8 RGB -> the planes of `pixel_format` as PyAV's `VideoFrame.from_ndarray` takes them:
    yuv420p (even sides) [H * 3 / 2, W] uint8, each chroma sample from its 2x2 block's summed RGB (so it is
    centre-sited); yuv444p [3, H, W]. BT.601 limited range in 16-bit fixed point: each coefficient is the
    exact one times 2^16, rounded, so every level is the exactly rounded one."""
    height, width = frame.shape[:2]
    r, g, b = (frame[..., c].astype(np.int32) for c in range(3))
    luma = ((LUMA[0] * r + LUMA[1] * g + LUMA[2] * b + (1 << 15)) >> 16) + 16
    shift = 16
    if pixel_format == "yuv420p":  # 4x each 2x2 block's mean, per channel
        r, g, b = (p[0::2, 0::2] + p[0::2, 1::2] + p[1::2, 0::2] + p[1::2, 1::2] for p in (r, g, b))
        shift = 18
    elif pixel_format != "yuv444p":
        raise ValueError(f"pixel format {pixel_format!r}: clips are yuv420p or yuv444p")
    cb = ((CB[0] * r + CB[1] * g + CB[2] * b + (1 << (shift - 1))) >> shift) + 128
    cr = ((CR[0] * r + CR[1] * g + CR[2] * b + (1 << (shift - 1))) >> shift) + 128
    if pixel_format == "yuv444p":
        return np.stack([luma, cb, cr]).astype(np.uint8)
    out = np.empty((height * 3 // 2, width), dtype=np.uint8)
    out[:height] = luma
    out[height:].reshape(2, -1)[:] = cb.reshape(-1), cr.reshape(-1)
    return out


# 2^16 x BT.601 limited range: Y' = 16 + 219/255 (.299 R + .587 G + .114 B); Cb, Cr = 128 + 224/255 (...)
LUMA, CB, CR = (16829, 33039, 6416), (-9714, -19071, 28785), (28785, -24103, -4682)


def encode_clip(frames, fps: float, settings: EncodeSettings = EncodeSettings()) -> bytes:
    frames = list(frames)
    encoder = ClipEncoder(frames[0].shape[1], frames[0].shape[0], fps, settings)
    for frame in frames:
        encoder.add(frame)
    return encoder.finish()


def open_clip(uri: str, storage: StorageConfig | None = None):
    """A decord VideoReader on a clip. decord reads a file object wholly into memory, which is why clips
    are bounded in length; S3 clips are fetched in one GET."""
    import decord

    if is_s3(uri):
        return decord.VideoReader(io.BytesIO(read_bytes(uri, storage)), num_threads=1)
    return decord.VideoReader(uri, num_threads=1)


def decode_clip_frames(reader, indices: list[int], width: int, height: int) -> np.ndarray:
    """[len(indices), height, width, 3] uint8 for frame numbers within the clip (any order, repeats allowed)."""
    unique = sorted(set(int(i) for i in indices))
    decoded = reader.get_batch(unique).asnumpy()[:, :height, :width]  # drop the even-size padding
    position = {frame: k for k, frame in enumerate(unique)}
    return decoded[[position[int(i)] for i in indices]]
