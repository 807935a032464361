"""Typed configuration of the data side: `ingest` (benchmark folders -> clips + manifest) and `data`
(manifests -> the Ray Data training stream). Defaults follow the official STARK training settings."""
from __future__ import annotations

from dataclasses import dataclass, field

LAYOUT_CHOICES = ("auto", "got10k", "lasot", "trackingnet", "footage")
NEGATIVE_KINDS = ("absent", "other_sequence", "drift")
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


@dataclass
class DataConfig:
    manifests: list[str] = field(default_factory=list)  # manifest files or ingest folders (local or s3://)
    splits: list[str] = field(default_factory=lambda: ["train"])  # manifest splits to sample from
    dataset_ratios: dict[str, float] = field(default_factory=dict)  # dataset -> weight; empty = equal weights
    samples_per_epoch: int = 60000  # official SAMPLE_PER_EPOCH
    max_gap: int = 200  # frames between template and search (official MAX_SAMPLE_INTERVAL)
    min_sequence_frames: int = 20  # shorter sequences are never sampled (official sampler rule)
    positive_ratio: float = 0.5  # stage 2: share of samples whose search frame contains the target
    # stage 2 negatives, kind -> weight (see sampling.py): "absent" (official: a frame without the target,
    # else another sequence's object), "other_sequence" (another sequence's object: a look-alike),
    # "drift" (the right frame, cropped where the tracker would look after drifting off the target)
    negative_mix: dict[str, float] = field(default_factory=lambda: {"absent": 1.0})
    search_scale_jitter: float = 0.5  # log-normal sigma of the search box size
    search_center_jitter: float = 4.5  # search centre moves uniformly within +-0.5 * this * sqrt(w*h)
    template_scale_jitter: float = 0.0
    template_center_jitter: float = 0.0
    grayscale_prob: float = 0.05  # whole sample turned gray
    flip_prob: float = 0.5  # each crop mirrored left-right
    brightness_jitter: float = 0.2  # each crop's brightness times U(1 - b, 1 + b)
    decode_actors: int = 2  # size of the decode/crop actor pool
    decode_batch_size: int = 16  # samples per map_batches call (clips shared inside a batch open once)
    open_clip_cache: int = 4  # opened clips an actor keeps across batches (0 = none)
    stream_buffer_mb: int = 0  # object store the training stream may fill ahead of the step (0 = Ray's default)

    def validate(self) -> None:
        if self.samples_per_epoch < 1:
            raise ValueError("data.samples_per_epoch must be >= 1")
        if self.max_gap < 1:
            raise ValueError("data.max_gap must be >= 1")
        if not 0.0 <= self.positive_ratio <= 1.0:
            raise ValueError(f"data.positive_ratio: {self.positive_ratio} must be within [0, 1]")
        for key in ("grayscale_prob", "flip_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"data.{key} must be within [0, 1]")
        if not 0.0 <= self.brightness_jitter < 1.0:
            raise ValueError("data.brightness_jitter must be within [0, 1)")
        unknown = sorted(set(self.negative_mix) - set(NEGATIVE_KINDS))
        if unknown:
            raise ValueError(f"data.negative_mix: {unknown} are not among {list(NEGATIVE_KINDS)}")
        if any(w < 0 for w in self.negative_mix.values()) or sum(self.negative_mix.values()) <= 0:
            raise ValueError("data.negative_mix: weights must be >= 0 with at least one > 0")
        for name, ratio in self.dataset_ratios.items():
            if ratio < 0:
                raise ValueError(f"data.dataset_ratios.{name}: {ratio} must be >= 0")
        if self.dataset_ratios and sum(self.dataset_ratios.values()) <= 0:
            raise ValueError("data.dataset_ratios: at least one ratio must be > 0")
        if self.stream_buffer_mb < 0:
            raise ValueError("data.stream_buffer_mb must be >= 0")
        if self.decode_actors < 1 or self.decode_batch_size < 1 or self.open_clip_cache < 0:
            raise ValueError("data.decode_actors and data.decode_batch_size must be >= 1, open_clip_cache >= 0")
