"""Typed configuration of `ingest`: benchmark folders or a user's videos -> H.264 clips + a Parquet manifest."""
from __future__ import annotations

from dataclasses import dataclass, field

LAYOUT_CHOICES = ("auto", "got10k", "lasot", "trackingnet", "footage")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass
class IngestConfig:
    layout: str = "auto"  # auto-detect, or one of got10k / lasot / trackingnet / footage
    splits: list[str] = field(default_factory=list)  # splits to import; empty = every split found
    footage_split: str = "train"  # the split a user's videos + CSV files are filed under
    crf: int = 16  # x264 constant quality; 16 keeps decoded frames >= 35 dB PSNR of (even small, textured) JPEGs
    keyframe_interval: int = 4  # frames per GOP: a random frame costs at most this many frame decodes
    preset: str = "medium"  # x264 speed/size trade-off
    pixel_format: str = "yuv420p"  # yuv444p keeps full colour resolution (larger, slower clips)
    fast_decode: bool = True  # x264 tune=fastdecode: ~2x cheaper decoding for ~5% more bytes
    max_clip_frames: int = 300  # longer sequences split into clips (decord holds a whole clip in memory)
    skip_invalid: bool = False  # skip (and report) bad sequences instead of stopping at the first
    max_in_flight: int = 0  # sequences encoded at once (Ray tasks); 0 = twice the cluster's CPUs

    def validate(self) -> None:
        if self.layout not in LAYOUT_CHOICES:
            raise ValueError(f"ingest.layout: {self.layout!r} is not one of {LAYOUT_CHOICES}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"ingest.crf: {self.crf} must be within 0..51")
        if self.keyframe_interval < 1:
            raise ValueError("ingest.keyframe_interval must be >= 1")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"ingest.preset: {self.preset!r} is not one of {X264_PRESETS}")
        if self.pixel_format not in ("yuv420p", "yuv444p"):
            raise ValueError(f"ingest.pixel_format: {self.pixel_format!r} is not yuv420p or yuv444p")
        if self.max_clip_frames < 1:
            raise ValueError("ingest.max_clip_frames must be >= 1")
        if self.max_in_flight < 0:
            raise ValueError("ingest.max_in_flight must be >= 0")


