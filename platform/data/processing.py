"""Frames + a sample spec -> the training tensors of one sample (official STARK processing).

Each crop is cut exactly as the tracker cuts at test time (`crop_around_box`: square side
ceil(sqrt(w*h) * factor), zero padding, padding mask), then: grayscale (joint, for every crop of the
sample), horizontal flip (joint), brightness x U(1-b, 1+b) clamped to [0, 1] (per crop), ImageNet
normalisation. The search target is returned in normalised crop coordinates (cxcywh in [0, 1]),
clipped to the crop: the corner head cannot point outside it.
"""
from __future__ import annotations

import numpy as np

from .. import image_norm
from ..crop import crop_around_box
from .sampling import CropGeometry, CropSpec, SampleSpec

IMAGENET_MEAN = np.array(image_norm.IMAGENET_MEAN, dtype=np.float32)  # the tracker's normalisation too
IMAGENET_STD = np.array(image_norm.IMAGENET_STD, dtype=np.float32)
GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as cv2's RGB2GRAY


def crop_target(frame: np.ndarray, crop: CropSpec, factor: float, out_size: int, grayscale: bool,
                out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image [3, S, S] float32 normalised, padding mask [S, S] bool, target xywh normalised to the crop).
    `out`, if given, is the [3, S, S] float32 array the image is written into (a slot of a batch)."""
    image, mask, window = crop_around_box(frame, crop.crop_box_xywh, factor, out_size)
    box = window.box_to_crop(crop.target_box_xywh) / out_size  # xywh in [0, 1] crop units
    if grayscale:
        gray = np.rint(image.astype(np.float32) @ GRAY_WEIGHTS).clip(0, 255)
        image = np.repeat(gray[..., None], 3, axis=2)
    if crop.flip:
        image, mask = image[:, ::-1], mask[:, ::-1]
        box = np.array([1.0 - box[0] - box[2], box[1], box[2], box[3]])
    pixels = np.empty((3, out_size, out_size), dtype=np.float32) if out is None else out
    for c in range(3):  # HWC uint8 -> one CHW float plane at a time, written once, in place
        plane = pixels[c]
        np.multiply(image[..., c], np.float32(crop.brightness / 255.0), out=plane, dtype=np.float32)
        np.minimum(plane, np.float32(1.0), out=plane)
        plane -= IMAGENET_MEAN[c]
        plane /= IMAGENET_STD[c]
    return pixels, np.ascontiguousarray(mask), box


def clip_box_to_crop(box_xywh: np.ndarray) -> np.ndarray:
    """Normalised xywh -> the part inside [0, 1]^2, as cxcywh."""
    x0, y0 = np.clip(box_xywh[:2], 0.0, 1.0)
    x1, y1 = np.clip(box_xywh[:2] + box_xywh[2:], 0.0, 1.0)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=np.float32)


def empty_batch(size: int, geometry: CropGeometry) -> dict[str, np.ndarray]:
    """Uninitialised arrays for `size` samples in the training batch format."""
    t, z, x = geometry.num_templates, geometry.template_size, geometry.search_size
    return {"template": np.empty((size, t, 3, z, z), dtype=np.float32),
            "template_mask": np.empty((size, t, z, z), dtype=bool),
            "search": np.empty((size, 3, x, x), dtype=np.float32),
            "search_mask": np.empty((size, x, x), dtype=bool),
            "search_box": np.empty((size, 4), dtype=np.float32),
            "label": np.empty(size, dtype=np.float32),
            "sample_index": np.empty(size, dtype=np.int64)}


def fill_sample(batch: dict[str, np.ndarray], row: int, spec: SampleSpec, frames: dict[tuple[int, int], np.ndarray],
                geometry: CropGeometry) -> None:
    """Crop one sample straight into row `row` of a batch from `empty_batch`.
    `frames` maps (sequence, frame) -> HWC uint8."""
    for k, c in enumerate(spec.templates):
        _, batch["template_mask"][row, k], _ = crop_target(
            frames[(c.sequence, c.frame)], c, geometry.template_factor, geometry.template_size, spec.grayscale,
            out=batch["template"][row, k])
    _, batch["search_mask"][row], box = crop_target(
        frames[(spec.search.sequence, spec.search.frame)], spec.search, geometry.search_factor,
        geometry.search_size, spec.grayscale, out=batch["search"][row])
    batch["search_box"][row] = clip_box_to_crop(box)
    batch["label"][row] = spec.label
    batch["sample_index"][row] = spec.sample_index


def process_sample(spec: SampleSpec, frames: dict[tuple[int, int], np.ndarray], geometry: CropGeometry) -> dict:
    """One sample's arrays: template [T, 3, Hz, Wz], template_mask [T, Hz, Wz], search [3, Hx, Wx],
    search_mask [Hx, Wx], search_box [4] cxcywh, label [], sample_index []."""
    batch = empty_batch(1, geometry)
    fill_sample(batch, 0, spec, frames, geometry)
    return {key: value[0] for key, value in batch.items()}
