"""Typed configuration of `tracker`: STARK-ST's template-update rule and how crops are cut."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from ..crop import CROP_RULES


@dataclass
class TrackerSettings:
    update_interval: int = 200  # frames between dynamic-template updates (official: 200 LaSOT/GOT-10k, 25 TrackingNet)
    score_threshold: float = 0.5  # update only when sigmoid(score) exceeds this
    box_margin: float = 10.0  # a clipped box keeps at least this many pixels inside the frame
    # platform: crops as training cuts them; official: the official tracker's crop and map-back
    # (platform/crop.py), which loading an official release file selects unless overridden
    crop_rule: Literal["platform", "official"] = "platform"
    present_threshold: float = 0.5  # a frame's target counts as present when sigmoid(score) >= this (STARK-ST)

    def validate(self) -> None:
        if self.update_interval < 1:
            raise ValueError(f"tracker.update_interval must be >= 1, got {self.update_interval}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"tracker.score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 <= self.present_threshold <= 1.0:
            raise ValueError(f"tracker.present_threshold must be in [0, 1], got {self.present_threshold}")
        if self.box_margin < 1:
            raise ValueError("tracker.box_margin must be >= 1")
        if self.crop_rule not in CROP_RULES:
            raise ValueError(f"tracker.crop_rule must be one of {sorted(CROP_RULES)}, got {self.crop_rule!r}")


def resolve_tracker_settings(cfg_tracker, stored: dict | None, overrides: list[str]):
    """Settings stored with the model (tuned) win over the config file; explicit tracker.* overrides on
    the command line win over both."""
    settings = dataclasses.asdict(cfg_tracker)
    explicit = {o.split("=", 1)[0].strip()[len("tracker."):] for o in overrides if o.startswith("tracker.")}
    for key, value in (stored or {}).items():
        if key in settings and key not in explicit:
            settings[key] = value
    result = TrackerSettings(**settings)
    result.validate()
    return result
