"""Window sampling: many samples cut from a few clip windows, so a decode worker reads each window once,
in order, instead of seeking to three random frames per sample.

A *unit* is what one actor makes at a time: `data.windows_in_flight` windows, each
`data.window_frames` consecutive frames of a sequence drawn as the official sampler draws one (dataset
by ratio, then a usable sequence uniformly), and `data.samples_per_window` samples from each. Every
sample is one draw of the official sampler (`sampling.draw_sample`) restricted to its window, so:
- a sequence no longer than the window is its own window: each sample's frames, jitter, augmentation
  and label are distributed exactly as the official per-sample sampler's (`make_sample_spec`); only
  samples of one unit are correlated (several share a sequence);
- a longer sequence (LaSOT, TrackingNet) is sampled in a window placed uniformly in it; template-search
  gaps up to `max_gap` keep their statistics (window_frames > max_gap) except near the window's ends,
  and STARK-ST's initial template, which the official sampler draws anywhere in the sequence, comes
  from at most window_frames away (tests/data/test_window_fidelity.py states both, measured);
- stage 2 "other sequence" negatives take a visible frame of another window of the unit (a sequence
  drawn by the same rule), or, when every window holds the same sequence, of a sequence drawn as the
  official sampler does (one more clip to read).

Diversity: the unit's sample positions are dealt to its windows by a seeded permutation, so
consecutive samples (a training batch) come from up to windows_in_flight sequences.

Sample numbers keep their meaning: sample i of an epoch is position i % U of unit i // U
(U = samples_per_window x windows_in_flight), drawn from a generator seeded by (seed, epoch, unit),
so a sample is the same whichever actor makes it: the stream stays reproducible and resumable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import DataConfig
from .frame_index import FrameIndex
from .sampling import (MAX_DRAWS, CropGeometry, SampleSpec, _other_sequence_frame, draw_sample, draw_sequence,
                       sample_visible)

UNIT_STREAM = 0x57494E  # mixed into the unit seed: a unit's generator never equals a per-sample one


@dataclass(frozen=True)
class Window:
    sequence: int
    start: int  # first frame (in the sequence)
    stop: int  # one past the last


@dataclass
class Unit:
    epoch: int
    number: int  # unit number within its epoch: samples [number * U, (number + 1) * U)
    windows: list[Window]
    window_of: np.ndarray  # [U] which window each position was drawn from
    samples: list[SampleSpec]  # [U] position p = sample index number * U + p


def draw_window(index: FrameIndex, rng: np.random.Generator, length: int, num_templates: int) -> Window:
    """A sequence as the official sampler draws one, and `length` frames of it placed uniformly (all of it
    when shorter). A window must hold more than 2 x (templates + 1) visible frames, as the frame index
    requires of a sequence; another placement (then sequence) is drawn otherwise."""
    for _ in range(MAX_DRAWS):
        seq = draw_sequence(index, rng)
        n = int(index.seq_num_frames[seq])
        start = 0 if n <= length else int(rng.integers(n - length + 1))
        stop = min(n, start + length)
        if index.sequence_visible(seq)[start:stop].sum() > 2 * (num_templates + 1):
            return Window(seq, start, stop)
    raise RuntimeError(f"no window of {length} frames with enough visible frames after {MAX_DRAWS} draws")


def draw_unit(index: FrameIndex, epoch: int, number: int, cfg: DataConfig, geometry: CropGeometry, stage: int,
              seed: int) -> Unit:
    rng = np.random.default_rng([seed, epoch, number, UNIT_STREAM])
    windows = [draw_window(index, rng, cfg.window_frames, geometry.num_templates)
               for _ in range(cfg.windows_in_flight)]
    window_of = rng.permutation(np.repeat(np.arange(len(windows)), cfg.samples_per_window))
    first = number * cfg.samples_per_unit
    samples = []
    for position, w in enumerate(window_of):
        window = windows[int(w)]
        others = [o for o in windows if o.sequence != window.sequence]
        other_frame = _from_other_window(index, others, rng) if others else \
            (lambda rng, seq=window.sequence: _other_sequence_frame(index, seq, rng))
        for _ in range(MAX_DRAWS):
            spec = draw_sample(index, first + position, window.sequence, window.start, window.stop, cfg, geometry,
                               stage, rng, other_frame)
            if spec is not None:
                samples.append(spec)
                break
        else:
            raise RuntimeError(f"sample {first + position}: no valid crop in window {window} after {MAX_DRAWS} draws")
    return Unit(epoch, number, windows, window_of, samples)


def _from_other_window(index: FrameIndex, others: list[Window], _rng: np.random.Generator):
    def other_frame(rng: np.random.Generator) -> tuple[int, int]:
        window = others[int(rng.integers(len(others)))]
        visible = index.sequence_visible(window.sequence)[window.start:window.stop]
        return window.sequence, window.start + sample_visible(visible, rng)
    return other_frame


def unit_positions(sample_indices, cfg: DataConfig) -> dict[int, list[int]]:
    """Sample numbers of one epoch -> {unit number: [positions in the unit]}, units in order."""
    per_unit = cfg.samples_per_unit
    grouped: dict[int, list[int]] = {}
    for i in sample_indices:
        grouped.setdefault(int(i) // per_unit, []).append(int(i) % per_unit)
    return grouped


def window_sample_spec(index: FrameIndex, sample_index: int, cfg: DataConfig, geometry: CropGeometry, stage: int,
                       seed: int, epoch: int) -> SampleSpec:
    """The spec of one stream sample (draws its whole unit: for tests and tools, not the stream's loop)."""
    unit = draw_unit(index, epoch, sample_index // cfg.samples_per_unit, cfg, geometry, stage, seed)
    return unit.samples[sample_index % cfg.samples_per_unit]
