"""Which layout a source folder has, and the importer that reads it."""
from __future__ import annotations

import os

from . import footage, got10k, lasot, trackingnet
from .sources import InvalidInputError, Listing

LAYOUTS = ("got10k", "lasot", "trackingnet", "footage")


def detect_layout(root: str) -> str:
    if not os.path.isdir(root):
        raise InvalidInputError(root, "source folder does not exist")
    for name, module in (("got10k", got10k), ("trackingnet", trackingnet), ("lasot", lasot), ("footage", footage)):
        if module.looks_like(root):
            return name
    raise InvalidInputError(root, "not a known layout: expected GOT-10k ({train,val,test}/list.txt), "
                                  "LaSOT (<class>/<class>-N/img), TrackingNet (TRAIN_k/anno, TEST/anno) "
                                  "or videos (.mp4/.avi/.mkv) with a .csv box file each")


def read_source(root: str, layout: str = "auto", splits: list[str] | None = None,
                footage_split: str = "train") -> tuple[str, Listing]:
    """(layout, listing of valid and invalid sequences) for a source folder."""
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "got10k":
        return layout, got10k.read_got10k(root, splits)
    if layout == "lasot":
        return layout, lasot.read_lasot(root, splits)
    if layout == "trackingnet":
        return layout, trackingnet.read_trackingnet(root, splits)
    if layout == "footage":
        return layout, footage.read_footage(root, footage_split)
    raise ValueError(f"layout {layout!r} is not one of {LAYOUTS} or 'auto'")
