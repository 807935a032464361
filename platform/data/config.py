"""Typed configuration of `data`: manifests -> the Ray Data training stream. Defaults follow the official
STARK training settings (lib/train/data/sampler.py, processing.py)."""
from __future__ import annotations

from dataclasses import dataclass, field

NEGATIVE_KINDS = ("absent", "other_sequence", "drift", "occluded")


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
    # "drift" (the right frame, cropped where the tracker would look after drifting off the target),
    # "occluded" (a frame without the target, cropped where it was last seen: the crop of a hidden target)
    negative_mix: dict[str, float] = field(default_factory=lambda: {"absent": 1.0})
    search_scale_jitter: float = 0.5  # log-normal sigma of the search box size
    search_center_jitter: float = 4.5  # search centre moves uniformly within +-0.5 * this * sqrt(w*h)
    template_scale_jitter: float = 0.0
    template_center_jitter: float = 0.0
    grayscale_prob: float = 0.05  # whole sample turned gray
    flip_prob: float = 0.5  # the sample (every crop of it) mirrored left-right
    brightness_jitter: float = 0.2  # each crop's brightness times U(1 - b, 1 + b)
    decode_actors: int = 2  # decode/crop workers (Ray tasks, one CPU each) a stream runs at a time
    # how a decode worker amortises decoding (see windows.py): it draws `windows_in_flight` clip windows of
    # `window_frames` consecutive frames, cuts `samples_per_window` samples from each (the official sampler
    # restricted to the window), decodes every window once in order and hands the samples out shuffled
    # across windows. A window of a sequence no longer than window_frames is the whole sequence (sampling
    # exactly as the official per-sample sampler); window_frames must exceed max_gap.
    window_frames: int = 400
    samples_per_window: int = 64  # more: fewer decoded frames per sample, fewer sequences per batch
    windows_in_flight: int = 8  # sequences a unit mixes; a worker's buffer holds in_flight x per_window samples
    open_clip_cache: int = 4  # clips (compressed bytes) a decode worker keeps across windows (0 = none)
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
        if self.decode_actors < 1 or self.open_clip_cache < 0:
            raise ValueError("data.decode_actors must be >= 1, data.open_clip_cache >= 0")
        if self.samples_per_window < 1 or self.windows_in_flight < 1:
            raise ValueError("data.samples_per_window and data.windows_in_flight must be >= 1")
        if self.window_frames <= self.max_gap:
            raise ValueError(f"data.window_frames ({self.window_frames}) must exceed data.max_gap ({self.max_gap}): "
                             f"a window shorter than the sampler's gap would change the frame-gap statistics")

    @property
    def samples_per_unit(self) -> int:
        """Samples an actor makes from one set of windows in flight (see windows.py)."""
        return self.samples_per_window * self.windows_in_flight
