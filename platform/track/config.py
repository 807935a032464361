"""Typed configuration of `tracker`: STARK-ST's template-update rule and how crops are cut.

A model's settings are resolved once, by `TrackerChoice.for_model`, and then passed on frozen: the
tracker, evaluation workers and tuning trials all receive the same `TrackerSettings` object.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..crop import CROP_RULES


@dataclass(frozen=True)
class TrackerSettings:
    update_interval: int = 200  # frames between dynamic-template updates (official: 200 LaSOT/GOT-10k, 25 TrackingNet)
    score_threshold: float = 0.5  # update only when sigmoid(score) exceeds this
    box_margin: float = 10.0  # a clipped box keeps at least this many pixels inside the frame
    # platform: crops as training cuts them; official: the official tracker's crop and map-back
    # (platform/crop.py), which loading an official release file selects unless overridden
    crop_rule: Literal["platform", "official"] = "platform"
    present_threshold: float = 0.5  # a frame's target counts as present when sigmoid(score) >= this (STARK-ST)
    # Re-detection (STARK-ST; not in the official tracker, which is redetect_after=0): after this many
    # consecutive frames scored below redetect_threshold the target counts as lost; the tracker then holds
    # the last box scored at or above it and searches the whole frame, in a grid of at most
    # redetect_windows search crops at that box's scale, until one scores at or above the threshold again.
    # Without it, a box that follows the network through an occlusion shrinks onto clutter and its ever
    # smaller search crop never finds the target again.
    redetect_after: int = 0
    redetect_threshold: float = 0.5
    redetect_windows: int = 16
    # Size consistency (not in the official tracker, which is 0): the score every decision uses (and every
    # result reports) is the score head's sigmoid times exp(-size_consistency * |log(s / s_ref)|), s the
    # box's sqrt(w * h) and s_ref that of the box the newest template was cut around (loop.size_consistent).
    size_consistency: float = 0.0
    # Aspect consistency (not in the official tracker either): the same, times exp(-aspect_consistency *
    # |log(a / a_ref)|), a the box's w / h and a_ref that of the same reference box (loop.aspect_consistent).
    aspect_consistency: float = 0.0

    def validate(self) -> None:
        if self.update_interval < 1:
            raise ValueError(f"tracker.update_interval must be >= 1, got {self.update_interval}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"tracker.score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.present_threshold <= 1.0:
            raise ValueError(f"tracker.present_threshold must be in [0, 1], got {self.present_threshold}")
        if self.redetect_after < 0:
            raise ValueError(f"tracker.redetect_after must be >= 0 (0: never), got {self.redetect_after}")
        if not 0.0 <= self.redetect_threshold <= 1.0:
            raise ValueError(f"tracker.redetect_threshold must be in [0, 1], got {self.redetect_threshold}")
        if self.redetect_windows < 1:
            raise ValueError(f"tracker.redetect_windows must be >= 1, got {self.redetect_windows}")
        if self.size_consistency < 0:
            raise ValueError(f"tracker.size_consistency must be >= 0 (0: off), got {self.size_consistency}")
        if self.aspect_consistency < 0:
            raise ValueError(f"tracker.aspect_consistency must be >= 0 (0: off), got {self.aspect_consistency}")
        if self.box_margin < 1:
            raise ValueError("tracker.box_margin must be >= 1")
        if self.crop_rule not in CROP_RULES:
            raise ValueError(f"tracker.crop_rule must be one of {sorted(CROP_RULES)}, got {self.crop_rule!r}")


@dataclass(frozen=True)
class TrackerChoice:
    """What decides a model's tracker settings, fixed where the config is loaded: the `tracker` section
    and which of its keys the command line set (`ExperimentConfig.tracker_choice`).

    Settings stored with the model (tuned ones; an official file's crop_rule) win over the config file;
    keys the command line set win over both."""

    configured: TrackerSettings = field(default_factory=TrackerSettings)
    command_line: frozenset[str] = frozenset()  # tracker keys set by `tracker.KEY=value` overrides

    def for_model(self, stored: Mapping[str, object] | None) -> TrackerSettings:
        """The settings to track a model with, given the settings stored with it (None: none)."""
        known = {f.name for f in dataclasses.fields(TrackerSettings)}
        taken = {k: v for k, v in (stored or {}).items() if k in known and k not in self.command_line}
        settings = dataclasses.replace(self.configured, **taken)
        settings.validate()
        return settings
