"""Frames + a sample spec -> the uint8 training arrays of one sample (official STARK processing, split).

On the decode worker (here): each crop is cut as the tracker cuts at test time (`crop_around_box`:
square side ceil(sqrt(w*h) * factor), zero padding, padding mask) and mirrored when the sample is
flipped (joint, for every crop of the sample); crops ship as uint8 CHW, with the padding masks, the
search target in normalised crop coordinates (cxcywh in [0, 1], clipped to the crop: the corner head
cannot point outside it), and the sample's photometric draws (`brightness` per crop, `grayscale`).
On the training device (`device_images.network_images`): grayscale, brightness x U(1-b, 1+b) clamped
to [0, 1], ImageNet normalisation, on the whole batch at once. 4x fewer bytes than float crops travel
through Ray's object store, and the actor does no per-pixel float work beyond the resampling.

Frames come either as RGB arrays (`fill_sample`: JPEG files, tests) or as decoded YUV planes
(`yuv_crop.py`, what the stream uses): the geometry and the batch format are the same.
"""
from __future__ import annotations

import numpy as np

from .. import image_norm
from ..crop import crop_around_box, crop_window
from .sampling import CropGeometry, CropSpec, SampleSpec

IMAGENET_MEAN = np.array(image_norm.IMAGENET_MEAN, dtype=np.float32)  # the tracker's normalisation too
IMAGENET_STD = np.array(image_norm.IMAGENET_STD, dtype=np.float32)
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as cv2's RGB2GRAY


def crop_target(frame: np.ndarray, crop: CropSpec, factor: float, out_size: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [3, S, S] uint8, padding mask [S, S] bool, target xywh normalised to the crop), flipped when
    `crop.flip`. Brightness and grayscale are left to the device (`device_images`)."""
    image, mask, window = crop_around_box(frame, crop.crop_box_xywh, factor, out_size)
    box = window.box_to_crop(crop.target_box_xywh) / out_size  # xywh in [0, 1] crop units
    if crop.flip:
        image, mask, box = image[:, ::-1], mask[:, ::-1], flip_box(box)
    return np.ascontiguousarray(image.transpose(2, 0, 1)), np.ascontiguousarray(mask), box


def flip_box(box_xywh: np.ndarray) -> np.ndarray:
    """Normalised xywh of a box in a crop -> the same box in the crop mirrored left-right."""
    return np.array([1.0 - box_xywh[0] - box_xywh[2], box_xywh[1], box_xywh[2], box_xywh[3]])


def clip_box_to_crop(box_xywh: np.ndarray) -> np.ndarray:
    """Normalised xywh -> the part inside [0, 1]^2, as cxcywh."""
    x0, y0 = np.clip(box_xywh[:2], 0.0, 1.0)
    x1, y1 = np.clip(box_xywh[:2] + box_xywh[2:], 0.0, 1.0)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=np.float32)


def empty_batch(size: int, geometry: CropGeometry) -> dict[str, np.ndarray]:
    """Uninitialised arrays for `size` samples in the training batch format (see stream.py)."""
    t, z, x = geometry.num_templates, geometry.template_size, geometry.search_size
    return {"template": np.empty((size, t, 3, z, z), dtype=np.uint8),
            "template_mask": np.empty((size, t, z, z), dtype=bool),
            "search": np.empty((size, 3, x, x), dtype=np.uint8),
            "search_mask": np.empty((size, x, x), dtype=bool),
            "search_box": np.empty((size, 4), dtype=np.float32),
            "label": np.empty(size, dtype=np.float32),
            "brightness": np.empty((size, t + 1), dtype=np.float32),
            "grayscale": np.empty(size, dtype=bool),
            "sequence": np.empty(size, dtype=np.int64),
            "sample_index": np.empty(size, dtype=np.int64)}


def fill_fields(batch: dict[str, np.ndarray], row: int, spec: SampleSpec, search_box_xywh: np.ndarray) -> None:
    """Everything of row `row` but the pixels: target, label, photometric draws, provenance."""
    batch["search_box"][row] = clip_box_to_crop(search_box_xywh)
    batch["label"][row] = spec.label
    batch["brightness"][row] = [c.brightness for c in (*spec.templates, spec.search)]
    batch["grayscale"][row] = spec.grayscale
    batch["sequence"][row] = spec.templates[0].sequence
    batch["sample_index"][row] = spec.sample_index


def search_box_in_crop(spec: SampleSpec, geometry: CropGeometry) -> np.ndarray:
    """The search target as normalised xywh of the (possibly flipped) search crop."""
    window = crop_window(spec.search.crop_box_xywh, geometry.search_factor, geometry.search_size)
    box = window.box_to_crop(spec.search.target_box_xywh) / geometry.search_size
    return flip_box(box) if spec.search.flip else box


def fill_sample(batch: dict[str, np.ndarray], row: int, spec: SampleSpec, frames: dict[tuple[int, int], np.ndarray],
                geometry: CropGeometry) -> None:
    """Crop one sample into row `row` of a batch from `empty_batch`. `frames` maps (sequence, frame) ->
    HWC uint8 RGB."""
    for k, c in enumerate(spec.templates):
        batch["template"][row, k], batch["template_mask"][row, k], _ = crop_target(
            frames[(c.sequence, c.frame)], c, geometry.template_factor, geometry.template_size)
    batch["search"][row], batch["search_mask"][row], box = crop_target(
        frames[(spec.search.sequence, spec.search.frame)], spec.search, geometry.search_factor, geometry.search_size)
    fill_fields(batch, row, spec, box)


def process_sample(spec: SampleSpec, frames: dict[tuple[int, int], np.ndarray], geometry: CropGeometry) -> dict:
    """One sample's arrays: template [T, 3, Hz, Wz] uint8, template_mask [T, Hz, Wz], search [3, Hx, Wx]
    uint8, search_mask [Hx, Wx], search_box [4] cxcywh, label [], brightness [T + 1], grayscale [],
    sequence [], sample_index []."""
    batch = empty_batch(1, geometry)
    fill_sample(batch, 0, spec, frames, geometry)
    return {key: value[0] for key, value in batch.items()}
